"""``parley`` console script: parse configuration once, then run the UI or batch mode."""

from __future__ import annotations

import asyncio
import sys

from .config import ConfigError, load_settings

EXIT_CONFIG = 2
EXIT_REFUSED = 4  # this home is already in the room from another terminal (as in batch.py)


def _fail(text: str, code: int) -> int:
    sys.stderr.write(f"parley: error: {text}\n")
    sys.stderr.flush()
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the client; returns (and exits with) the process status. Never shows a traceback."""
    try:
        settings = load_settings(argv, stdin_is_tty=sys.stdin.isatty())
        if settings.batch:
            from .batch import run_batch

            status = asyncio.run(run_batch(settings))
        else:
            from .ui import TerminalUI

            status = asyncio.run(TerminalUI(settings).run())
    except ConfigError as e:
        from .roomstate import RoomBusy

        status = _fail(str(e), EXIT_REFUSED if isinstance(e, RoomBusy) else EXIT_CONFIG)
    except KeyboardInterrupt:
        status = 130
    except Exception as e:  # noqa: BLE001 - last line of defence: one line, no traceback
        status = _fail(f"{type(e).__name__}: {e}".splitlines()[0][:300], 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
