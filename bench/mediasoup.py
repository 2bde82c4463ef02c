"""mediasoup 3 as a baseline: the SFU people pick for raw efficiency, run by the harness.

The baseline itself lives outside this repository, read-only, beside it:
``<repo>/../shared/baselines/mediasoup/`` holds ``mediasoup-worker`` (mediasoup's C++
worker, built for this machine) and ``server.js``, a small Node.js server that speaks the
load clients' part of ``PROTOCOL.md`` (``hello``/``join``/``publish``/``subscribe`` →
``offer {pc: "sub"}``/``answer``, JSON subprotocol, tokens decoded but not verified),
so :class:`~bench.loadclient.DockcastSignal` drives it unchanged.

:class:`MediasoupSystem` installs mediasoup's JS package (``npm install --ignore-scripts``:
its install script would download a worker; ``MEDIASOUP_WORKER_BIN`` names the shared one
instead) with ``ws`` and ``sdp-transform`` once into a cache folder
(:func:`ensure_node_modules`), then starts ``node server.js`` on a free loopback port with
ICE on 127.0.0.1: the same network path as Dockcast and Janus. Its CPU is the ``node``
process and its ``mediasoup-worker`` child together (the harness counts a server's child
processes). Where the folder, ``node``, ``npm`` or the worker's shared libraries
(Debian: ``libuv1 libssl3 libabsl20220623``) are missing, the system is skipped and says
which (:func:`missing`).

Errors: :class:`MediasoupError` (``RuntimeError``): the npm install failed.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pathlib
import shutil
import subprocess

from .harness import REPO, Run, System, free_port

__all__ = ["MEDIASOUP_VERSION", "NPM_PACKAGES", "MediasoupError", "MediasoupSystem",
           "baseline_dir", "ensure_node_modules", "installed_version", "missing"]

MEDIASOUP_VERSION = "3.27.1"  # the version the shared worker binary was built from
NPM_PACKAGES = (f"mediasoup@{MEDIASOUP_VERSION}", "ws@8", "sdp-transform@3")
# the worker's shared libraries and the Debian packages that ship them
_LIB_PACKAGES = (("libuv", "libuv1"), ("libssl", "libssl3"), ("libcrypto", "libssl3"),
                 ("libabsl", "libabsl20220623"))
NPM_TIMEOUT_S = 300.0


class MediasoupError(RuntimeError):
    """mediasoup's node modules could not be installed (the message has npm's output)."""


def baseline_dir(repo: pathlib.Path = REPO) -> pathlib.Path:
    """Where the shared mediasoup baseline is: ``<repo>/../shared/baselines/mediasoup``."""
    return repo.parent / "shared" / "baselines" / "mediasoup"


def _unloadable_libraries(binary: pathlib.Path) -> list[str]:
    """Shared libraries ``binary`` needs that the dynamic loader cannot find (``ldd``)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []  # nothing to ask: a missing library shows when the worker starts
    try:
        listing = subprocess.run([ldd, str(binary)], capture_output=True, text=True, timeout=30,
                                 check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split()[0] for line in listing.splitlines() if "not found" in line]


def missing(folder: pathlib.Path | None = None) -> str | None:
    """Why mediasoup cannot run here (the first reason found), or None if it can."""
    folder = folder or baseline_dir()
    worker, server = folder / "mediasoup-worker", folder / "server.js"
    if not folder.is_dir():
        return f"the mediasoup baseline is not beside the repository ({folder} does not exist)"
    for path in (worker, server):
        if not path.is_file():
            return f"the mediasoup baseline has no {path.name} in {folder}"
    if not os.access(worker, os.X_OK):
        return f"{worker} is not executable"
    if shutil.which("node") is None:
        return "node not installed (apt-get install nodejs)"
    libraries = _unloadable_libraries(worker)
    if libraries:
        packages = sorted({pkg for lib in libraries for prefix, pkg in _LIB_PACKAGES
                           if lib.startswith(prefix)})
        hint = f": apt-get install {' '.join(packages)}" if packages else ""
        return f"mediasoup-worker cannot load {', '.join(libraries)}{hint}"
    return None


def installed_version(cache: pathlib.Path) -> str | None:
    """The mediasoup version in ``cache/node_modules`` when ``ws`` and ``sdp-transform``
    are there too, else None."""
    modules = cache / "node_modules"
    if not all((modules / name / "package.json").is_file() for name in ("ws", "sdp-transform")):
        return None
    try:
        return json.loads((modules / "mediasoup" / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        return None


def _npm_install(cache: pathlib.Path, log: pathlib.Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise MediasoupError("npm not installed (apt-get install npm), and no node modules "
                             f"in {cache}")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs sharing the cache install once
        if installed_version(cache) == MEDIASOUP_VERSION:
            return
        with open(log, "ab") as out:
            try:
                done = subprocess.run(
                    [npm, "install", "--ignore-scripts", "--save-exact", "--no-audit", "--no-fund",
                     "--prefix", str(cache), *NPM_PACKAGES],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=NPM_TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired:
                raise MediasoupError(f"npm install took over {NPM_TIMEOUT_S:g} s (log: {log})") from None
        if done.returncode != 0 or installed_version(cache) != MEDIASOUP_VERSION:
            tail = log.read_text(errors="replace")[-1500:].strip()
            raise MediasoupError(f"npm install {' '.join(NPM_PACKAGES)} into {cache} failed "
                                 f"(exit {done.returncode}): {tail}")


async def ensure_node_modules(cache: pathlib.Path, log: pathlib.Path) -> pathlib.Path:
    """``cache/node_modules`` with mediasoup :data:`MEDIASOUP_VERSION`, ``ws`` and
    ``sdp-transform``, installed by npm the first time (output appended to ``log``).
    Raises :class:`MediasoupError` when npm is missing or fails."""
    if installed_version(cache) != MEDIASOUP_VERSION:
        await asyncio.to_thread(_npm_install, cache, log)
    return cache / "node_modules"


class MediasoupSystem(System):
    """``node server.js`` of the shared baseline with one ``mediasoup-worker``, on loopback."""

    name = "mediasoup"
    label = f"mediasoup {MEDIASOUP_VERSION}"
    signal = "dockcast"  # server.js speaks the load clients' part of PROTOCOL.md
    python = False
    how = ("on loopback (127.0.0.1): node server.js with one mediasoup-worker (C++), ICE-lite, "
           "DTLS server; its CPU is the node process and the worker together")

    def __init__(self, cache: pathlib.Path, folder: pathlib.Path | None = None) -> None:
        super().__init__()
        self.cache = pathlib.Path(cache)
        self.folder = folder or baseline_dir()
        self.skipped = missing(self.folder)

    async def start(self, run: Run) -> None:
        try:
            modules = await ensure_node_modules(self.cache, run.logs / "mediasoup-npm.log")
        except MediasoupError as exc:
            self.skipped = str(exc)
            return
        port = free_port()
        self.url = f"ws://127.0.0.1:{port}/ws"
        env = dict(os.environ, NODE_PATH=str(modules),
                   MEDIASOUP_WORKER_BIN=str(self.folder / "mediasoup-worker"),
                   DOCKCAST_HOST="127.0.0.1", DOCKCAST_PORT=str(port),
                   DOCKCAST_ICE_ADDRESS=self.ice_address, MS_LOG_LEVEL="warn")
        env.pop("MS_DTLS_ROLE", None)  # the DTLS server, as its README measured it
        await self._launch([shutil.which("node") or "node", str(self.folder / "server.js")],
                           run.logs / "mediasoup.log", "127.0.0.1", port, env=env)
