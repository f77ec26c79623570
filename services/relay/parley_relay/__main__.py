"""Entry point: `python -m parley_relay` / the `parley-relay` console script."""

# gevent must patch socket, ssl, threading before anything imports them (redis, socketio),
# or the relay deadlocks under load (DESIGN.md section 8).
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse configuration once and run the relay."""
    from parley_relay.config import ConfigError, load_settings
    from parley_relay.server import run

    try:
        settings = load_settings(argv)
    except ConfigError as exc:
        print(f"parley-relay: configuration error: {exc}", file=sys.stderr)
        return 2
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
