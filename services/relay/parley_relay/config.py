"""Relay configuration: flag, then PARLEY_* environment variable, then default.

`load_settings(argv, environ)` is called once from `main()`; the frozen `Settings` it returns is
passed down to everything else. Nothing here reads the environment at import time.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .redis_cluster import (
    ClusterUrlError,
    cluster_url_from_list,
    is_cluster_url,
    parse_cluster_url,
)
from .redis_secret import PasswordFileError, read_password_file, url_has_password, url_with_password

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# A sender's JSON may \u-escape every non-ASCII character (python-socketio does): at most 3x
# its UTF-8 size (a 2-byte character becomes 6 bytes). The websocket frame cap allows that,
# so a payload at the limit gets `payload_too_large`, not a dropped connection.
JSON_ESCAPE_FACTOR = 3
# Engine.IO/Socket.IO framing around a payload: packet type, ack id, event name, brackets.
FRAME_OVERHEAD_BYTES = 4096
# A token must carry at least 128 bits: 22 characters of base64 or 32 of hex.
MIN_TOKEN_CHARS = 22
MIN_HEX_TOKEN_CHARS = 32


class ConfigError(ValueError):
    """A configuration value is malformed; str() says which one and why."""


@dataclass(frozen=True)
class RateLimit:
    """Token bucket parameters: `rate` tokens per second, at most `burst` saved up."""

    rate: float
    burst: int


@dataclass(frozen=True)
class Settings:
    """Everything the relay needs, parsed once at start-up."""

    host: str = "127.0.0.1"
    port: int = 5000
    # Both may hold secrets (the Redis password is filled into the URL): never in a repr.
    redis_url: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    max_message_bytes: int = 65536
    rate_limit: RateLimit | None = RateLimit(50.0, 200)
    cors_origins: tuple[str, ...] | str | None = None
    log_level: str = "INFO"
    heartbeat_seconds: float = 15.0
    replica_id: str = ""
    # How long a secret seat whose member disconnected stays reserved for its secret: as long
    # as the mailbox keeps messages for an absent member (7 days), so nobody else can take a
    # departed member's place meanwhile. The `leave` event releases it at once.
    seat_ttl_seconds: float = 7 * 24 * 3600.0
    # Redis Cluster only: a failover takes cluster-node-timeout (Redis's default 15 s) plus
    # about a second; a message waits that out rather than being refused (bus.ClusterBus).
    cluster_failover_seconds: float = 20.0
    # Resource bounds (docs/operations.md "Limits" says why each default is what it is).
    outbound_queue_bytes: int = 1_048_576
    header_timeout: float = 10.0
    connect_timeout: float = 10.0
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    idle_timeout: float = 60.0
    max_connections: int = 10_000
    max_connections_per_address: int = 64
    connect_rate: RateLimit | None = RateLimit(5.0, 30)
    # Offline delivery (issue 15; services/relay/README.md says why each default is what it
    # is). Per secret seat: what waits for an absent member, and its one-time prekeys.
    mailbox_max_messages: int = 1000
    mailbox_max_bytes: int = 10_485_760
    mailbox_ttl_seconds: float = 7 * 24 * 3600.0
    prekeys_max: int = 200
    # Relay-wide: payload and prekey bytes kept for all seats together (rooms are free, so a
    # per-seat bound alone lets one client fill Redis); keep it at most half of Redis's
    # maxmemory (docs/operations.md "Redis memory").
    mailbox_total_bytes: int = 268_435_456
    # One asking seat gets the same one-time prekey again within this window, so a single
    # member cannot empty the peer's one-time keys by fetching in a loop.
    prekeys_fetch_window_seconds: float = 10.0

    @property
    def max_frame_bytes(self) -> int:
        """Largest websocket message read (one frame or all fragments): derived, not set."""
        return JSON_ESCAPE_FACTOR * self.max_message_bytes + FRAME_OVERHEAD_BYTES


_RATE_RE = re.compile(
    r"^\s*(?P<rate>\d+(?:\.\d+)?)\s*(?:/s)?\s*(?:(?:,|\s+burst\s+)\s*(?P<burst>\d+))?\s*$"
)


def parse_rate_limit(text: str) -> RateLimit | None:
    """Parse "RATE[,BURST]" or "RATE/s burst BURST"; "off" or "0" disables the limit.

    BURST defaults to twice RATE (at least 1).
    """
    text = text.strip()
    if text.lower() in ("off", "none", "0", ""):
        return None
    m = _RATE_RE.match(text)
    if not m:
        raise ConfigError(
            f"rate limit {text!r}: expected 'RATE,BURST' (e.g. '50,200'), "
            "'RATE/s burst BURST' or 'off'"
        )
    rate = float(m["rate"])
    burst = int(m["burst"]) if m["burst"] else max(1, int(rate * 2))
    if rate <= 0 or burst < 1:
        raise ConfigError(f"rate limit {text!r}: rate and burst must be positive")
    return RateLimit(rate, burst)


def parse_cors(text: str) -> tuple[str, ...] | str | None:
    """ "" means same-origin only (python-socketio's default), "*" any origin, else a comma list."""
    text = text.strip()
    if not text:
        return None
    if text == "*":
        return "*"
    return tuple(o.strip() for o in text.split(",") if o.strip())


def _default_replica_id() -> str:
    # Unique per process even when many replicas share a host name (containers, tests).
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _positive(name: str, text: str, kind: type = int):
    """Parse `text` as a positive `kind` (int or float) or raise ConfigError naming `name`."""
    try:
        value = kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name} must be {noun}, got {text!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


# flag name -> (env var, default as text or None, help)
OPTIONS: dict[str, tuple[str, str | None, str]] = {
    "host": ("PARLEY_HOST", "127.0.0.1", "interface to listen on (0.0.0.0 in containers)"),
    "port": ("PARLEY_PORT", "5000", "TCP port"),
    "redis_url": (
        "PARLEY_REDIS_URL",
        None,
        "Redis URL (redis+cluster://h1:p1,h2:p2 for Redis Cluster); unset = single process",
    ),
    "redis_cluster": (
        "PARLEY_REDIS_CLUSTER",
        None,
        "Redis Cluster startup nodes 'h1:p1,h2:p2' (instead of a redis+cluster:// URL)",
    ),
    "cluster_failover_seconds": (
        "PARLEY_CLUSTER_FAILOVER_SECONDS",
        "20",
        "on Redis Cluster: how long a message waits out a master failover before the "
        "sender gets 'unavailable' (above cluster-node-timeout)",
    ),
    "redis_password_file": (
        "PARLEY_REDIS_PASSWORD_FILE",
        None,
        "file holding the Redis password, used when the Redis URL has none",
    ),
    "token": ("PARLEY_RELAY_TOKEN", None, "shared secret clients must send as auth.token"),
    "max_message_bytes": ("PARLEY_MAX_MESSAGE_BYTES", "65536", "largest payload accepted"),
    "rate_limit": ("PARLEY_RATE_LIMIT", "50,200", "per connection: 'RATE,BURST' or 'off'"),
    "cors_origins": ("PARLEY_CORS_ORIGINS", "", "'' same origin, '*' any, or a comma list"),
    "log_level": ("PARLEY_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    "heartbeat_seconds": (
        "PARLEY_HEARTBEAT_SECONDS",
        "15",
        "replica liveness TTL in Redis; members of a silent replica are pruned after it",
    ),
    "replica_id": ("PARLEY_REPLICA_ID", None, "name of this replica (default host-pid-random)"),
    "seat_ttl": (
        "PARLEY_SEAT_TTL",
        "604800",
        "seconds a departed member's seat stays reserved for its resume secret (7 days)",
    ),
    "outbound_queue_bytes": (
        "PARLEY_OUTBOUND_QUEUE_BYTES",
        "1048576",
        "bytes queued for one connection but not yet sent; past it the reader is disconnected",
    ),
    "header_timeout": ("PARLEY_HEADER_TIMEOUT", "10", "seconds to send a full request header"),
    "connect_timeout": (
        "PARLEY_CONNECT_TIMEOUT",
        "10",
        "seconds from the Engine.IO open to the Socket.IO CONNECT",
    ),
    "ping_interval": ("PARLEY_PING_INTERVAL", "25", "seconds between Engine.IO pings"),
    "ping_timeout": ("PARLEY_PING_TIMEOUT", "20", "seconds to answer a ping"),
    "idle_timeout": (
        "PARLEY_IDLE_TIMEOUT",
        "60",
        "seconds a socket may stay silent (above ping interval + timeout)",
    ),
    "max_connections": ("PARLEY_MAX_CONNECTIONS", "10000", "open connections per replica"),
    "max_connections_per_address": (
        "PARLEY_MAX_CONNECTIONS_PER_ADDRESS",
        "64",
        "open connections per client IP address, or 'off'",
    ),
    "connect_rate": (
        "PARLEY_CONNECT_RATE",
        "5,30",
        "Socket.IO CONNECT attempts per client IP address: 'RATE,BURST' or 'off'",
    ),
    "mailbox_max_messages": (
        "PARLEY_MAILBOX_MAX_MESSAGES",
        "1000",
        "messages kept for an absent member's seat; past it the sender gets mailbox_full",
    ),
    "mailbox_max_bytes": (
        "PARLEY_MAILBOX_MAX_BYTES",
        "10485760",
        "payload bytes kept for an absent member's seat (10 MiB)",
    ),
    "mailbox_ttl": (
        "PARLEY_MAILBOX_TTL",
        "604800",
        "seconds a stored message waits before it expires (7 days); the sender is told",
    ),
    "prekeys_max": ("PARLEY_PREKEYS_MAX", "200", "one-time prekeys kept per seat"),
    "mailbox_total_bytes": (
        "PARLEY_MAILBOX_TOTAL_BYTES",
        "268435456",
        "stored message + prekey bytes for all seats together (256 MiB); past it mailbox_full",
    ),
    "prekeys_fetch_window": (
        "PARLEY_PREKEYS_FETCH_WINDOW",
        "10",
        "seconds in which one seat's fetch_prekeys hands back the same one-time prekey",
    ),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("parley-relay")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The relay's command line; every flag defaults to None so env/defaults can apply."""
    parser = argparse.ArgumentParser(
        prog="parley-relay", description="Parley relay: Socket.IO room router for two-member rooms"
    )
    parser.add_argument("--version", action="version", version=f"parley-relay {_version()}")
    for name, (env, default, help_text) in OPTIONS.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=None,
            help=f"{help_text} [env {env}, default {default!r}]",
        )
    return parser


def load_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Resolve every option (flag > env > default) into a validated, frozen Settings."""
    args = build_parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    raw: dict[str, str | None] = {}
    for name, (env, default, _) in OPTIONS.items():
        value = getattr(args, name)
        if value is None:
            value = environ.get(env) or default
        raw[name] = value

    level = (raw["log_level"] or "INFO").upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    replica = raw["replica_id"] or _default_replica_id()
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", replica):
        raise ConfigError(f"replica id {replica!r}: use letters, digits and ._:- only")
    redis_url = _redis_url(
        _cluster_or_url(raw["redis_url"] or None, raw["redis_cluster"] or None),
        raw["redis_password_file"] or None,
    )
    port = _positive("port", raw["port"] or "")
    if port > 65535:
        raise ConfigError(f"port must be at most 65535, got {port}")
    token = raw["token"] or None
    if token is not None:
        check_token(token)
    return Settings(
        host=raw["host"] or "127.0.0.1",
        port=port,
        redis_url=redis_url,
        token=token,
        max_message_bytes=_positive("max message bytes", raw["max_message_bytes"] or ""),
        rate_limit=parse_rate_limit(raw["rate_limit"] or ""),
        cors_origins=parse_cors(raw["cors_origins"] or ""),
        log_level=level,
        heartbeat_seconds=_positive("heartbeat seconds", raw["heartbeat_seconds"] or "", float),
        replica_id=replica,
        seat_ttl_seconds=_positive("seat ttl", raw["seat_ttl"] or "", float),
        cluster_failover_seconds=_positive(
            "cluster failover seconds", raw["cluster_failover_seconds"] or "", float
        ),
        **_bounds(raw),
    )


def _cluster_or_url(url: str | None, cluster: str | None) -> str | None:
    """PARLEY_REDIS_URL, or the redis+cluster:// URL of a --redis-cluster node list."""
    if cluster is None:
        return url
    if url is not None:
        raise ConfigError("set either a redis url or a redis cluster node list, not both")
    try:
        return cluster_url_from_list(cluster)
    except ClusterUrlError as exc:
        raise ConfigError(str(exc).replace("redis cluster url", "redis cluster")) from None


def _redis_url(url: str | None, password_file: str | None) -> str | None:
    """The Redis URL, with the password from `password_file` filled in when it has none."""
    if url is not None and not re.match(r"^(redis|rediss|unix|rediss?\+cluster)://", url):
        # Not the URL itself: it may carry a password.
        raise ConfigError(
            "redis url: expected redis://, rediss://, unix:// or redis+cluster://h1:p1,h2:p2"
            " (Sentinel is not supported)"
        )
    if url is not None and is_cluster_url(url):
        try:
            parse_cluster_url(url)
        except ClusterUrlError as exc:
            raise ConfigError(str(exc)) from None
    if password_file is None:
        return url
    if url is None:
        raise ConfigError(
            f"redis password file {password_file} is set but no redis url: set PARLEY_REDIS_URL"
        )
    try:
        password = read_password_file(password_file)
    except PasswordFileError as exc:
        raise ConfigError(str(exc)) from None
    # A password written in the URL itself is the more explicit choice: it wins.
    return url if url_has_password(url) else url_with_password(url, password)


def check_token(token: str) -> None:
    """Refuse a relay token of fewer than 128 bits (an online guess must stay hopeless)."""
    hex_only = re.fullmatch(r"[0-9a-fA-F]+", token) is not None
    need = MIN_HEX_TOKEN_CHARS if hex_only else MIN_TOKEN_CHARS
    if len(token) < need:
        raise ConfigError(
            f"relay token is too short ({len(token)} characters): use at least 128 bits, "
            f"e.g. {MIN_TOKEN_CHARS}+ characters of base64 or {MIN_HEX_TOKEN_CHARS}+ of hex; "
            "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


def _count_or_off(name: str, text: str) -> int:
    """A positive integer, or 0 for "off"/"0" (no limit)."""
    if text.strip().lower() in ("off", "0", "none"):
        return 0
    return _positive(name, text)


def _bounds(raw: dict[str, str | None]) -> dict[str, object]:
    """The resource-bound fields of Settings, validated against each other."""
    seconds = {
        name: _positive(name.replace("_", " "), raw[name] or "", float)
        for name in ("header_timeout", "connect_timeout", "ping_interval", "ping_timeout")
    }
    idle = _positive("idle timeout", raw["idle_timeout"] or "", float)
    if idle <= seconds["ping_interval"] + seconds["ping_timeout"]:
        raise ConfigError(
            f"idle timeout ({idle:g} s) must exceed ping interval + ping timeout "
            f"({seconds['ping_interval'] + seconds['ping_timeout']:g} s), "
            "or healthy quiet clients would be cut"
        )
    max_message = _positive("max message bytes", raw["max_message_bytes"] or "")
    queue = _positive("outbound queue bytes", raw["outbound_queue_bytes"] or "")
    frame = JSON_ESCAPE_FACTOR * max_message + FRAME_OVERHEAD_BYTES
    if queue < frame:
        raise ConfigError(
            f"outbound queue bytes ({queue}) must hold at least one largest frame ({frame})"
        )
    return {
        **seconds,
        "idle_timeout": idle,
        "outbound_queue_bytes": queue,
        "max_connections": _positive("max connections", raw["max_connections"] or ""),
        "max_connections_per_address": _count_or_off(
            "max connections per address", raw["max_connections_per_address"] or ""
        ),
        "connect_rate": parse_rate_limit(raw["connect_rate"] or ""),
        **_mailbox(raw, max_message),
    }


def _mailbox(raw: dict[str, str | None], max_message: int) -> dict[str, object]:
    """The offline-delivery fields of Settings (a mailbox must hold one largest message)."""
    max_bytes = _positive("mailbox max bytes", raw["mailbox_max_bytes"] or "")
    if max_bytes < max_message:
        raise ConfigError(
            f"mailbox max bytes ({max_bytes}) must hold at least one largest message "
            f"({max_message}, PARLEY_MAX_MESSAGE_BYTES)"
        )
    total = _positive("mailbox total bytes", raw["mailbox_total_bytes"] or "")
    if total < max_message:
        raise ConfigError(
            f"mailbox total bytes ({total}) must hold at least one largest message "
            f"({max_message}, PARLEY_MAX_MESSAGE_BYTES)"
        )
    return {
        "mailbox_max_messages": _positive(
            "mailbox max messages", raw["mailbox_max_messages"] or ""
        ),
        "mailbox_max_bytes": max_bytes,
        "mailbox_ttl_seconds": _positive("mailbox ttl", raw["mailbox_ttl"] or "", float),
        "prekeys_max": _positive("prekeys max", raw["prekeys_max"] or ""),
        "mailbox_total_bytes": total,
        "prekeys_fetch_window_seconds": _positive(
            "prekeys fetch window", raw["prekeys_fetch_window"] or "", float
        ),
    }


def listening_line(host: str, port: int) -> str:
    """The one line for a person starting the relay by hand (stdout; the JSON logs go to
    stderr): where it listens and the client command that reaches it."""
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - a comparison
    if ":" in shown:
        shown = f"[{shown}]"
    url = f"http://{shown}:{port}"
    where = f"{url} (all interfaces)" if shown == "localhost" and host != "localhost" else url
    return f"parley-relay listening on {where} - connect with: parley --relay {url}"
