"""Run ``parley-relay`` with a wiretap on everything it sends to clients (for the demo only).

Every call of python-socketio's ``Server.emit`` (the one way the relay delivers an event) is
appended as one JSON line ``{"t", "event", "payload"}`` to the file named by ``DEMO_TAP_FILE``,
then delivered unchanged. The relay itself is not modified: this shows exactly what a relay
operator could record. Arguments are passed to ``parley-relay``.

    DEMO_TAP_FILE=/tmp/tap.jsonl python scripts/relay_tap.py --port 5000
"""

# Same order as the relay's own entry point: gevent patches sockets before anything else loads.
from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import socketio  # noqa: E402


def install_tap(path: str) -> None:
    """Wrap ``socketio.Server.emit`` so every outgoing event is also written to ``path``."""
    original = socketio.Server.emit

    def tapped(self, event, data=None, *args, **kwargs):
        record = {"t": round(time.time(), 3), "event": event, "payload": data}
        with open(path, "a", encoding="utf-8") as tap:
            tap.write(json.dumps(record, default=repr) + "\n")
        return original(self, event, data, *args, **kwargs)

    socketio.Server.emit = tapped


def main() -> int:
    path = os.environ.get("DEMO_TAP_FILE")
    if not path:
        print("relay_tap: set DEMO_TAP_FILE to the file to write", file=sys.stderr)
        return 2
    install_tap(path)
    from parley_relay.__main__ import main as relay_main

    return relay_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
