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
from dataclasses import dataclass

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


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
    redis_url: str | None = None
    token: str | None = None
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
    "redis_url": ("PARLEY_REDIS_URL", None, "Redis URL; unset = single process, in memory"),
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
}


def build_parser() -> argparse.ArgumentParser:
    """The relay's command line; every flag defaults to None so env/defaults can apply."""
    parser = argparse.ArgumentParser(
        prog="parley-relay", description="Parley relay: Socket.IO room router for two-member rooms"
    )
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
    redis_url = raw["redis_url"] or None
    if redis_url is not None and not re.match(r"^(redis|rediss|unix)://", redis_url):
        raise ConfigError(f"redis url {redis_url!r}: expected redis://, rediss:// or unix://")
    port = _positive("port", raw["port"] or "")
    if port > 65535:
        raise ConfigError(f"port must be at most 65535, got {port}")
    return Settings(
        host=raw["host"] or "127.0.0.1",
        port=port,
        redis_url=redis_url,
        token=raw["token"] or None,
        max_message_bytes=_positive("max message bytes", raw["max_message_bytes"] or ""),
        rate_limit=parse_rate_limit(raw["rate_limit"] or ""),
        cors_origins=parse_cors(raw["cors_origins"] or ""),
        log_level=level,
        heartbeat_seconds=_positive("heartbeat seconds", raw["heartbeat_seconds"] or "", float),
        replica_id=replica,
        seat_ttl_seconds=_positive("seat ttl", raw["seat_ttl"] or "", float),
    )
