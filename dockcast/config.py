"""Node configuration: one documented dataclass, from defaults, a TOML file, the
environment (``DOCKCAST_<FLAG>``) and command-line flags, in that order of precedence.

Every field is documented in ``docs/configuration.md``; the names are the long flags
of ``dockcast serve`` with dashes turned into underscores.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pathlib
import secrets
import ssl
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["NodeConfig", "ConfigError", "load_config", "dev_credentials", "describe", "secrets_of",
           "tls_context", "MIN_SECRET_BYTES"]

# Settings only a TOML file can give (a table does not fit in a flag or a variable).
_FILE_ONLY = frozenset({"plugin_options"})
#: The shortest API secret a node accepts, in bytes (RFC 7518 3.2: HS256 keys of at least
#: the hash's 256 bits).
MIN_SECRET_BYTES = 32


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names it."""


@dataclass(frozen=True)
class NodeConfig:
    host: str = "127.0.0.1"                 # websocket/HTTP listen address
    port: int = 8765                        # websocket/HTTP port
    data_dir: str = "./data"                # SQLite stores, recordings, keys
    api_key: str | None = None              # API key (token `iss`); a dev key if unset
    api_secret: str | None = None           # its HS256 secret; generated and printed if unset
    ice_address: str | None = None          # address put in ICE candidates (default: host if it is an IP)
    ice_servers: tuple[str, ...] = ()       # STUN/TURN URLs; none by default (never a public default)
    region: str = "local"                   # region name reported in `welcome`
    node_id: str | None = None              # node name; generated if unset
    redis: str | None = None                # Redis URL: cluster mode (not needed on one node)
    public_url: str | None = None           # the ws(s):// URL clients use for this node (default: host and port)
    trunk_port: int | None = None           # UDP port of node-to-node media and control (default: port + 1)
    trunk_address: str | None = None        # HOST:PORT other nodes send to for it (NAT, relay; default: host:trunk_port)
    # which region a client is in by its source address, when its hello names none:
    # "10.8.0.0/16=asia,203.0.113.0/24=us-west" or a TOML table [region_map]
    region_map: Mapping[str, str] = field(default_factory=dict)
    tls_cert: str | None = None             # PEM certificate chain: serve wss:// and https://
    tls_key: str | None = None              # its PEM private key
    config: str | None = None               # TOML file with any of these fields
    auto_create_rooms: bool = True          # `join` creates unknown rooms
    transport_cc: bool = True               # offer subscribers transport-cc (send-side estimation, probes)
    log_level: str = "info"                 # debug, info, warning, error
    log_format: str = "text"                # text (key=value) or json (one object per line)
    max_frame_bytes: int = 256 * 1024       # largest websocket frame accepted
    max_payload_bytes: int = 64 * 1024      # largest room message payload
    request_rate: float = 50.0              # requests per second per connection (token bucket)
    request_burst: int = 100                # requests a connection may save up
    plugins: tuple[str, ...] = ()           # extra plugins: "module:Class" or an entry point name
    # options per plugin name, from the TOML tables [plugins.NAME] (file only)
    plugin_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    message_max_age_s: float = 7 * 24 * 3600.0   # room messages older than this are pruned (0: no limit)
    message_max_count: int = 100_000        # messages kept per room (0: no limit)
    message_max_bytes: int = 256 * 2**20    # payload bytes kept per room (0: no limit)
    message_drop_unacked: bool = False      # let the limits drop messages a member has not acked
    message_member_idle_s: float = 30 * 24 * 3600.0  # a member cursor idle this long expires (0: never)
    drain_seconds: float = 5.0              # how long a stop waits for clients to leave
    room_empty_timeout_s: float = 300.0     # a room.create room nobody joined closes after this
    room_departure_timeout_s: float = 20.0  # a room whose last participant left closes after this
    participant_grace_s: float = 15.0       # a dropped connection's participant waits this long to resume
    # more API keys at once (key -> secret), for rotation: "k1:s1,k2:s2" or a TOML table [api_keys]
    api_keys: Mapping[str, str] = field(default_factory=dict)
    max_token_ttl_s: float = 24 * 3600.0    # tokens living longer (exp - iat/nbf) are refused (0: no limit)
    # node-wide caps (0: no limit); a refusal changes nothing and is counted
    max_rooms: int = 1000                   # rooms open on the node (more: unavailable)
    max_participants_per_room: int = 100    # participants in one room (more: forbidden)
    max_tracks_per_participant: int = 8     # tracks one participant publishes (more: forbidden)
    max_subscriptions_per_participant: int = 500  # tracks one participant subscribes to (forbidden)
    max_mlines_per_offer: int = 16          # m-lines in one publish offer (more: bad_request)
    max_connections: int = 10_000           # websocket connections open at once (more: HTTP 503)
    # threads beside the event loop's that protect and send a packet's copies in a big
    # room (-1: one per core beyond the first, at most 3; 0: none)
    fanout_threads: int = -1
    # a join is refused (unavailable) while the event loop runs this late (ms; 0: never)
    max_loop_lag_ms: float = 1000.0
    # worker processes on this machine, one port for clients (0: one per core); more than
    # one needs redis-server (a private one is started) or `redis` (dockcast.workers)
    workers: int = 1

    @property
    def resolved_fanout_threads(self) -> int:
        """``fanout_threads`` with -1 turned into this machine's number."""
        if self.fanout_threads >= 0:
            return self.fanout_threads
        cores = os.cpu_count() or 1
        workers = self.workers or cores  # the cores each worker has to itself
        return min(max(cores // workers - 1, 0), 3)

    @property
    def local_host(self) -> str:
        """Where a client on this machine reaches ``host`` (a wildcard: 127.0.0.1)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    def local_url(self, port: int | None = None, scheme: str = "http") -> str:
        """``http://HOST:PORT`` (``ws`` with ``scheme="ws"``; ``https``/``wss`` with TLS)
        of this node's ``port`` (default ``port``) as a client on this machine reaches it."""
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        secure = "s" if self.tls_cert is not None else ""
        return f"{scheme}{secure}://{host}:{self.port if port is None else port}"

    @property
    def keys(self) -> dict[str, str]:
        """Every API key the node accepts, with its secret (``api_key`` and ``api_keys``)."""
        keys = dict(self.api_keys)
        if self.api_key is not None and self.api_secret is not None:
            keys[self.api_key] = self.api_secret
        return keys

    @property
    def data_path(self) -> pathlib.Path:
        return pathlib.Path(self.data_dir)

    def region_for(self, address: str) -> str | None:
        """The region ``region_map`` gives a client's source ``address`` (the most
        specific network that holds it), or None."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        best: tuple[int, str] | None = None
        for network, region in self.region_map.items():
            net = ipaddress.ip_network(network, strict=False)
            if ip.version == net.version and ip in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, region)
        return best[1] if best else None

    @property
    def announced_ice_addresses(self) -> list[str]:
        """Addresses for ICE host candidates ([] = every interface, aioice's default)."""
        if self.ice_address:
            return [a.strip() for a in self.ice_address.split(",") if a.strip()]
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            return []
        return [] if address.is_unspecified else [str(address)]


_TYPES = {f.name: f.type for f in fields(NodeConfig)}


def _coerce(name: str, value: Any) -> Any:
    kind = str(_TYPES[name])
    if name in _FILE_ONLY:
        return value
    if name == "api_keys":
        return _api_keys(value)
    if name == "region_map":
        return _region_map(value)
    try:
        if kind in ("int", "int | None"):
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if kind.startswith("tuple"):
            if isinstance(value, (list, tuple)):
                return tuple(str(v) for v in value)
            return tuple(v.strip() for v in str(value).split(",") if v.strip())
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from exc
    return None if value is None else str(value)


def _region_map(value: Any) -> dict[str, str]:
    """``region_map``: a TOML table ``CIDR = region``, or ``CIDR=region,CIDR=region``;
    each network checked (``10.8.0.0/16``, ``2001:db8::/32``; a bare address is /32 or /128)."""
    if isinstance(value, Mapping):
        items = list(value.items())
    else:
        items = []
        for entry in str(value).split(","):
            if entry.strip():
                network, sep, region = entry.strip().partition("=")
                if not sep:
                    raise ConfigError(f"region_map: {entry.strip()!r} is not CIDR=region")
                items.append((network.strip(), region.strip()))
    out = {}
    for network, region in items:
        try:
            ipaddress.ip_network(str(network), strict=False)
        except ValueError:
            raise ConfigError(f"region_map: {network!r} is not a network (CIDR)") from None
        if not isinstance(region, str) or not region:
            raise ConfigError(f"region_map: the region of {network} must be a non-empty string")
        out[str(network)] = region
    return out


def _api_keys(value: Any) -> dict[str, str]:
    """``api_keys``: a TOML table, or ``key1:secret1,key2:secret2`` (a flag, a variable;
    the first colon splits, so a secret may hold colons but no comma)."""
    if isinstance(value, Mapping):
        items = list(value.items())
    else:
        items = []
        for entry in str(value).split(","):
            if not entry.strip():
                continue
            key, sep, secret = entry.strip().partition(":")
            if not sep or not key or not secret:
                raise ConfigError("api_keys: each entry must be key:secret, comma-separated")
            items.append((key, secret))
    keys: dict[str, str] = {}
    for key, secret in items:
        if not isinstance(key, str) or not key or not isinstance(secret, str):
            raise ConfigError("api_keys: each key and secret must be a non-empty string")
        if key in keys:
            raise ConfigError(f"api_keys: the key {key!r} twice")
        keys[key] = secret
    return keys


def _check_secret(what: str, secret: str) -> None:
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        raise ConfigError(f"{what}: an API secret must be at least {MIN_SECRET_BYTES} bytes "
                          f"(this one has {size}); generate one with: "
                          f"python -c 'import secrets; print(secrets.token_urlsafe(32))'")


def _plugins_from_file(value: Any, values: dict[str, Any]) -> None:
    """``plugins`` in a TOML file: a list of names, or tables ``[plugins.NAME]`` whose
    keys name the plugins to load and whose contents are their options."""
    if not isinstance(value, dict):
        values["plugins"] = value
        return
    for name, options in value.items():
        if not isinstance(options, dict):
            raise ConfigError(f"plugins.{name}: plugin options must be a table ([plugins.{name}])")
    values["plugins"] = list(value)
    values["plugin_options"] = value


def load_config(flags: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> NodeConfig:
    """Merge defaults < ``--config`` TOML file < ``DOCKCAST_*`` environment < flags."""
    flags = {k: v for k, v in (flags or {}).items()
             if v is not None and k in _TYPES and k not in _FILE_ONLY}
    environ = os.environ if environ is None else environ
    env = {name: environ[f"DOCKCAST_{name.upper()}"] for name in _TYPES
           if f"DOCKCAST_{name.upper()}" in environ and name not in _FILE_ONLY}
    values: dict[str, Any] = {}
    config_file = flags.get("config") or env.get("config")
    if config_file:
        try:
            with open(config_file, "rb") as f:
                from_file = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {config_file}: {exc}") from exc
        unknown = set(from_file) - set(_TYPES) | (set(from_file) & _FILE_ONLY)
        if unknown:
            raise ConfigError(f"config file {config_file}: unknown settings {sorted(unknown)}")
        if "plugins" in from_file:
            _plugins_from_file(from_file.pop("plugins"), values)
        values.update(from_file)
    values.update(env)
    values.update(flags)
    config = NodeConfig(**{k: _coerce(k, v) for k, v in values.items()})
    if not 0 < config.port < 65536:
        raise ConfigError(f"port: {config.port} is not a TCP port")
    if config.trunk_port is not None and not 0 < config.trunk_port < 65536:
        raise ConfigError(f"trunk_port: {config.trunk_port} is not a UDP port")
    if config.trunk_address is not None:
        host, sep, port = config.trunk_address.rpartition(":")
        if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"trunk_address: {config.trunk_address!r} is not HOST:PORT")
    if config.public_url is not None and urllib.parse.urlsplit(config.public_url).scheme not in ("ws", "wss"):
        raise ConfigError(f"public_url: {config.public_url!r} is not a ws:// or wss:// URL")
    if config.log_format not in ("text", "json"):
        raise ConfigError(f"log_format: {config.log_format!r} is not text or json")
    for name in ("request_rate", "request_burst"):
        if not getattr(config, name) > 0:
            raise ConfigError(f"{name}: {getattr(config, name)} must be more than 0")
    for name in ("message_max_age_s", "message_max_count", "message_max_bytes", "message_member_idle_s",
                 "room_empty_timeout_s", "room_departure_timeout_s", "participant_grace_s",
                 "max_token_ttl_s",
                 "max_rooms", "max_participants_per_room", "max_tracks_per_participant",
                 "max_subscriptions_per_participant", "max_mlines_per_offer", "max_connections",
                 "max_loop_lag_ms"):
        if not getattr(config, name) >= 0:
            raise ConfigError(f"{name}: {getattr(config, name)} must be 0 (no limit) or more")
    if not -1 <= config.fanout_threads <= 16:
        raise ConfigError(f"fanout_threads: {config.fanout_threads} must be -1 (one per core "
                          "beyond the first, at most 3), 0 (none) or up to 16")
    if not 0 <= config.workers <= 256:
        raise ConfigError(f"workers: {config.workers} must be 0 (one per core) or 1 to 256")
    if (config.api_key is None) != (config.api_secret is None):
        raise ConfigError("api_key and api_secret go together: give both or neither")
    if config.api_secret is not None:
        _check_secret("api_secret", config.api_secret)
    for key, secret in config.api_keys.items():
        _check_secret(f"api_keys: the secret of {key!r}", secret)
    if config.api_key in config.api_keys and config.api_keys[config.api_key] != config.api_secret:
        raise ConfigError(f"api_key {config.api_key!r} is also in api_keys, with two secrets: give one")
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("tls_cert and tls_key go together: give both or neither")
    return config


def tls_context(config: NodeConfig) -> ssl.SSLContext | None:
    """The server TLS context for ``wss://``, or None when TLS is not configured."""
    if config.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls_cert/tls_key: cannot load {config.tls_cert}: {exc}") from exc
    return context


def dev_credentials(config: NodeConfig) -> tuple[NodeConfig, bool]:
    """Fill in a development API key and secret when none is configured.

    The secret is kept in ``<data_dir>/dev-credentials.json`` (mode 0600) so that tokens
    minted against it survive a restart. Returns the config and whether the pair was made
    now (the first start: the only time it is shown).
    """
    if config.api_key is not None or config.api_keys:
        return config, False
    path = config.data_path / "dev-credentials.json"
    config.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        creds = json.loads(path.read_text())
        key, secret = creds["api_key"], creds["api_secret"]
        created = False
    except (OSError, ValueError, KeyError):
        # hex: never starts with "-", which a shell would hand to argparse as a flag
        key, secret = "devkey", secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"api_key": key, "api_secret": secret}, f)
        created = True
    return replace(config, api_key=key, api_secret=secret), created


def describe(config: NodeConfig) -> dict[str, Any]:
    """The configuration for the startup log, secrets left out (``api_secret``, the
    secrets of ``api_keys``: only the key names are shown, and any plugin option whose
    name says secret, token or password)."""
    described = {f.name: _redacted(getattr(config, f.name)) for f in fields(config)
                 if f.name not in ("api_secret", "api_keys", "plugin_options")}
    described["api_keys"] = sorted(config.keys)
    described["plugin_options"] = _redacted(config.plugin_options)
    return described


def secrets_of(config: NodeConfig) -> list[str]:
    """Every secret value in ``config``, for the log redaction
    (`dockcast.logs.register_secrets`): the API secrets, the Redis credentials, plugin
    options whose name says secret, token or password, credentials and query values of
    URLs."""
    found: list[str] = list(config.keys.values())

    def walk(value: Any, secret: bool = False) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, secret or _is_secret(k))
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, secret)
        elif isinstance(value, str):
            if secret:
                found.append(value)
            if "://" in value:
                parts = urllib.parse.urlsplit(value)
                found.extend(p for p in (parts.username, parts.password) if p)
                found.extend(v for _, v in urllib.parse.parse_qsl(parts.query) if v)

    walk(config.redis)
    walk(config.plugin_options)
    return found


def _redacted(value: Any) -> Any:
    # URLs lose their credentials and query values (redis://:pw@host, ...?token=...)
    from .logs import redact_text

    if isinstance(value, Mapping):
        return {k: "<redacted>" if _is_secret(k) else _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redacted(v) for v in value) if isinstance(value, tuple) else [_redacted(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return redact_text(value)
    return value


def _is_secret(key: Any) -> bool:
    # secret_env names a variable, not a secret: it may be logged
    text = str(key).lower()
    return key != "secret_env" and any(w in text for w in ("secret", "token", "password"))

