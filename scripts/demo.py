"""One-command Parley demo (``make demo``): a relay and two clients on this machine, no Docker.

Starts a relay with the in-memory manager (no Redis) on a free port, wrapped by
``relay_tap.py`` so that everything the relay sends to clients is recorded; starts Alice and
Bob in scripted mode (``parley --batch --json``); prints the handshake, both safety numbers,
a short conversation and what the relay forwarded; then stops everything it started.

Exit status 0 only when the safety numbers match, every message arrived exactly once, both
clients exited 0 and no line of the conversation appears in anything the relay forwarded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONVERSATION = [
    ("alice", "Hi Bob! Is this line really private?"),
    ("bob", "Hi Alice. The relay only ever sees ciphertext."),
    ("alice", "Then let's compare safety numbers on the phone."),
    ("bob", "Done: they match. Nobody is in the middle."),
]
STEP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without PARLEY_* settings, so the demo runs the same anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(extra)
    return env


def healthz(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:  # noqa: S310
            return json.loads(resp.read().decode())
    except (OSError, ValueError):
        return None


class Client:
    """``parley --batch --json`` in a subprocess; its JSON events are collected by a thread."""

    def __init__(self, name: str, room: str, relay: str, home: Path):
        self.name = name
        self.events: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "parley_client", "--batch", "--json", "--name", name,
             "--room", room, "--relay", relay, "--home", str(home), "--timeout", "20"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1, env=clean_env(),
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.events.put(json.loads(line))

    def wait_for(self, kind: str, match=lambda e: True) -> dict:
        """Next event of ``kind`` satisfying ``match`` (earlier ones are kept in ``seen``)."""
        for event in self.seen:
            if event.get("event") == kind and match(event) and not event.get("_used"):
                event["_used"] = True
                return event
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(event)
            if event.get("event") == kind and match(event):
                event["_used"] = True
                return event
        raise RuntimeError(f"{self.name}: no {kind!r} event within {STEP_TIMEOUT:.0f}s")

    def say(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self) -> int:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9


def group(number: str) -> str:
    return " ".join(number[i : i + 5] for i in range(0, len(number), 5))


def short(payload, width: int = 84) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def show_tap(tap_path: Path, said: list[str]) -> bool:
    """Print every event the relay sent; return True when no plaintext line occurs in any."""
    records = [json.loads(line) for line in tap_path.read_text().splitlines() if line.strip()]
    print(f"\n== What the relay forwarded ({len(records)} events, tapped at its Socket.IO emit)")
    for rec in records:
        size = len(json.dumps(rec["payload"], separators=(",", ":")))
        print(f"   {rec['event']:<20} {size:>5} B  {short(rec['payload'])}")
    envelopes = sum(rec["event"] == "received_message" for rec in records)
    print(f"   ({envelopes} sealed envelopes: the relay cannot tell texts from receipts)")
    dump = tap_path.read_text()
    leaked = [line for line in said if line in dump]
    print(f"   conversation lines found in forwarded payloads: {len(leaked)} of {len(said)}")
    for line in leaked:
        print(f"   LEAKED: {line}")
    return not leaked


def run_demo(workdir: Path) -> bool:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    room = f"demo-{secrets.token_hex(3)}"
    tap_path, relay_log = workdir / "relay-tap.jsonl", workdir / "relay.log"
    print(f"== Parley demo: relay on {url} (in-memory manager, no Redis), room {room}")
    with open(relay_log, "wb") as log:
        relay = subprocess.Popen(
            [sys.executable, str(HERE / "relay_tap.py"), "--host", "127.0.0.1", "--port",
             str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=clean_env(DEMO_TAP_FILE=str(tap_path)),
        )  # fmt: skip
    clients: list[Client] = []
    try:
        deadline = time.monotonic() + STEP_TIMEOUT
        while (health := healthz(url)) is None:
            if relay.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("relay did not start:\n" + relay_log.read_text()[-2000:])
            time.sleep(0.1)
        print(f"   relay /healthz: {json.dumps(health)}")
        alice = Client("alice", room, url, workdir / "home-alice")
        bob = Client("bob", room, url, workdir / "home-bob")
        clients = [alice, bob]
        ok = handshake(alice, bob)
        ok = converse({"alice": alice, "bob": bob}) and ok
        for c in clients:
            status = c.finish()
            print(f"   {c.name} exited with status {status} (0 = every message receipted)")
            ok = ok and status == 0
    finally:
        for c in clients:
            if c.proc.poll() is None:
                c.proc.kill()
        relay.terminate()
        try:
            relay.wait(timeout=10)
        except subprocess.TimeoutExpired:
            relay.kill()
    ok = show_tap(tap_path, [text for _, text in CONVERSATION]) and ok
    logged = [json.loads(x).get("event") for x in relay_log.read_text().splitlines()
              if x.startswith("{")]  # fmt: skip
    print(f"\n== Relay log (structured, metadata only): {', '.join(logged)}")
    print("== Stopped the relay and both clients.")
    return ok


def handshake(alice: Client, bob: Client) -> bool:
    print("\n== Handshake v2 (identities, ephemeral DH, signed key confirmation; via the relay)")
    numbers = {}
    for c in (alice, bob):
        secure = c.wait_for("secure")
        numbers[c.name] = secure["safety_number"]
        for event in c.seen:  # everything the client reported up to and including "secure"
            line = {"status": "state: {state}", "info": "{message}", "secure": "{text}"}.get(
                event.get("event"), ""
            )
            if line:
                print(f"   {c.name:<5} {line.format(**event)}")
            if event is secure:
                break
    print("\n== Safety numbers (compare them out of band; equal means no one is in the middle)")
    for name, number in numbers.items():
        print(f"   {name:<5} sees: {group(number)}")
    equal = numbers["alice"] == numbers["bob"] and len(numbers["alice"]) == 60
    print(f"   -> {'EQUAL' if equal else 'DIFFERENT: someone may be in the middle'}")
    return equal


def converse(clients: dict[str, Client]) -> bool:
    print("\n== Conversation (each line sealed with AES-256-CFB + HMAC + signature)")
    ok = True
    for sender, text in CONVERSATION:
        receiver = clients["bob" if sender == "alice" else "alice"]
        clients[sender].say(text)
        got = receiver.wait_for("message", lambda e, t=text: e.get("text") == t)
        delivered = got.get("from") == sender
        ok = ok and delivered
        print(f"   {sender:>5} -> {receiver.name:<5} {text}   [{'ok' if delivered else 'WRONG'}]")
    return ok


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description="Parley demo: a relay and two clients")
    cli.add_argument("--keep-tap", type=Path, help="copy the full relay tap (JSON lines) here")
    opts = cli.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="parley-demo-"))
    try:
        ok = run_demo(workdir)
    except (RuntimeError, OSError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        ok = False
    finally:
        tap = workdir / "relay-tap.jsonl"
        if opts.keep_tap is not None and tap.exists():
            shutil.copyfile(tap, opts.keep_tap)
        shutil.rmtree(workdir, ignore_errors=True)
    print("\nDEMO OK" if ok else "\nDEMO FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
