"""Janus on loopback: the getifaddrs shim, its build, Janus's configuration, skip reasons.

The forwarding run through Janus (and mediasoup) is in ``test_mediasoup.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from bench.janus import (
    SHIM_SOURCE,
    JanusSystem,
    ShimError,
    build_noloop_shim,
    janus_config,
)

CC = shutil.which("cc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc) to build the shim")

# Reads lo's flags through getifaddrs(3) by ctypes, in a process of its own (so that
# LD_PRELOAD applies): prints {"lo": [flags of each of lo's entries]}.
_PROBE = r"""
import ctypes, json
class Ifaddrs(ctypes.Structure):
    pass
Ifaddrs._fields_ = [("ifa_next", ctypes.POINTER(Ifaddrs)), ("ifa_name", ctypes.c_char_p),
                    ("ifa_flags", ctypes.c_uint)]
libc = ctypes.CDLL(None, use_errno=True)
head = ctypes.POINTER(Ifaddrs)()
assert libc.getifaddrs(ctypes.byref(head)) == 0, ctypes.get_errno()
flags, node = [], head
while node:
    if node.contents.ifa_name == b"lo":
        flags.append(node.contents.ifa_flags)
    node = node.contents.ifa_next
libc.freeifaddrs(head)
print(json.dumps({"lo": flags}))
"""
IFF_UP, IFF_LOOPBACK = 0x1, 0x8


def _lo_flags(preload: str | None = None) -> list[int]:
    env = {"PATH": "/usr/bin:/bin"} | ({"LD_PRELOAD": preload} if preload else {})
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          env=env, timeout=60, check=True)
    return json.loads(done.stdout)["lo"]


@needs_cc
def test_shim_hides_the_loopback_flag_of_lo_and_nothing_else(tmp_path):
    shim = build_noloop_shim(tmp_path / "shim")
    assert shim == tmp_path / "shim" / "getifaddrs_noloop.so" and shim.stat().st_size > 0
    plain = _lo_flags()
    assert plain and all(f & IFF_LOOPBACK for f in plain)  # the kernel's view
    hidden = _lo_flags(str(shim))
    assert len(hidden) == len(plain)
    assert not any(f & IFF_LOOPBACK for f in hidden)
    # only the loopback bit goes: lo stays up, with its other flags
    assert hidden == [f & ~IFF_LOOPBACK for f in plain] and all(f & IFF_UP for f in hidden)


def test_shim_build_failures_name_the_compiler(tmp_path):
    with pytest.raises(ShimError, match="nonexistent-cc"):
        build_noloop_shim(tmp_path, cc=str(tmp_path / "nonexistent-cc"))
    broken = tmp_path / "broken.c"
    broken.write_text("this is not C\n")
    if CC is not None:
        with pytest.raises(ShimError, match=r"broken\.c \(exit [1-9]"):
            build_noloop_shim(tmp_path, cc=CC, source=broken)


def test_shim_source_is_in_the_repository_and_no_binary_is():
    assert SHIM_SOURCE.is_file() and "IFF_LOOPBACK" in SHIM_SOURCE.read_text()
    assert not list(SHIM_SOURCE.parent.glob("*.so"))  # built per run, never committed


def test_loopback_config_gathers_on_lo_and_listens_on_the_given_port(tmp_path):
    janus_config(tmp_path, "lo", "127.0.0.1", lib=tmp_path / "lib", ws_port=41234)
    core = (tmp_path / "janus.jcfg").read_text()
    assert 'ice_enforce_list = "lo"' in core and "ice_lite = false" in core
    ws = (tmp_path / "janus.transport.websockets.jcfg").read_text()
    assert "ws_port = 41234" in ws and 'ws_ip = "127.0.0.1"' in ws


def test_loopback_is_the_default_and_names_its_path():
    system = JanusSystem()
    assert not system.use_netns and "loopback" in system.how and "getifaddrs" in system.how
    assert "namespace" in JanusSystem(netns=True).how


def test_without_janus_the_system_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no janus on it
    assert JanusSystem().skipped == "janus not installed (apt-get install janus)"
