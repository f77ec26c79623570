"""Real parley processes talking through two relay replicas over a real Redis."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import redis

from tests.support.leaks import assert_no_leaks

ALICE_SAYS = [
    "hello bob",
    "grüße aus Köln ✓ — ünïcödé",
    "   leading and trailing spaces  ",
    "x" * 2000,
]
BOB_SAYS = ["hi alice", "second line from bob", '{"json": "looking", "text": 1}']


def test_two_clients_on_different_replicas_exchange_both_ways(two_relays, batch_clients):
    r1, r2 = two_relays
    alice = batch_clients("alice", "duo", r1.url)
    bob = batch_clients("bob", "duo", r2.url)
    alice.send(*ALICE_SAYS)
    bob.send(*BOB_SAYS)
    assert bob.wait_received(len(ALICE_SAYS)) == ALICE_SAYS
    assert alice.wait_received(len(BOB_SAYS)) == BOB_SAYS
    assert alice.wait() == 0, alice.stderr()
    assert bob.wait() == 0, bob.stderr()
    # exactly once, from the right sender, and both sides agree on the safety number
    assert alice.received() == BOB_SAYS and bob.received() == ALICE_SAYS
    assert {e["from"] for e in bob.of("message")} == {"alice"}
    sa, sb = alice.of("secure")[0], bob.of("secure")[0]
    assert sa["safety_number"] == sb["safety_number"] and len(sa["safety_number"]) == 60
    assert {e["id"] for e in alice.of("delivered")} == {e["id"] for e in alice.of("queued")}


def test_plain_batch_output_and_safety_number_on_stderr(two_relays, tmp_path):
    import subprocess
    import sys

    from tests.support.clients import clean_env

    r1, r2 = two_relays

    def run(name, relay, text):
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "parley_client",
                "--name",
                name,
                "--room",
                "plain",
                "--relay",
                relay,
                "--home",
                str(tmp_path / name),
                "--timeout",
                "30",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(),
            text=True,
        )

    procs = []
    try:
        alice = run("alice", r1.url, None)
        procs.append(alice)
        bob = run("bob", r2.url, None)
        procs.append(bob)
        # stdin is a pipe, not a terminal: batch mode without --batch
        for proc, line in ((alice, "from alice\n"), (bob, "from bob\n")):
            proc.stdin.write(line)
            proc.stdin.close()
        alice.wait(timeout=60)
        bob.wait(timeout=60)
        out_a, err_a = alice.stdout.read(), alice.stderr.read()
        out_b, err_b = bob.stdout.read(), bob.stderr.read()
    finally:
        for proc in procs:  # reaped also when the test fails or times out
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
    assert alice.returncode == 0 and bob.returncode == 0, (err_a, err_b)
    assert "bob: from bob" in out_a.splitlines()
    assert "alice: from alice" in out_b.splitlines()
    numbers = [
        re.search(r"safety number: ((?:\d{5} ){11}\d{5})", e).group(1) for e in (err_a, err_b)
    ]
    assert numbers[0] == numbers[1]
    assert "Traceback" not in err_a + err_b


class Monitor:
    """A redis-py connection in MONITOR mode, recording every command Redis executes."""

    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url)
        self.lines: list[str] = []
        self._stop = False
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self._ready.wait(5)

    def _run(self):
        with self.client.monitor() as m:
            self._ready.set()
            for cmd in m.listen():
                self.lines.append(cmd["command"])
                if self._stop:
                    return

    def text(self) -> str:
        self._stop = True
        self.client.ping()  # wakes the listener so it sees _stop
        return "\n".join(self.lines)


def test_relay_and_redis_never_see_plaintext_or_keys(
    two_relays, redis_server, batch_clients, tmp_path
):
    r1, r2 = two_relays
    monitor = Monitor(redis_server.url)
    # one key log per client: a key log is only ever written to a new file
    keylogs = {name: tmp_path / f"keys-{name}.jsonl" for name in ("alice", "bob")}
    secrets_said = ["the vault code is 8271-CANARY-ALPHA", "meet at the old mill CANARY-BRAVO"]
    alice = batch_clients(
        "alice", "quiet", r1.url, env={"PARLEY_KEYLOG_FILE": str(keylogs["alice"])}
    )
    bob = batch_clients("bob", "quiet", r2.url, env={"PARLEY_KEYLOG_FILE": str(keylogs["bob"])})
    alice.send(secrets_said[0])
    bob.send(secrets_said[1])
    assert bob.wait_received(1) == [secrets_said[0]]
    assert alice.wait_received(1) == [secrets_said[1]]
    assert alice.wait() == 0 and bob.wait() == 0
    wire = monitor.text() + "\n" + r1.log() + "\n" + r2.log()

    # The monitor really saw the conversation: public identity keys cross Redis.
    public_y = json.loads(identity_file(tmp_path / "alice").read_text())["y"]
    assert public_y.lower() in wire.lower(), "MONITOR captured no payloads; the test is blind"

    secrets: dict[str, str | bytes] = {f"said {i}": t for i, t in enumerate(secrets_said)}
    secrets["canary"] = "CANARY-"
    for name in ("alice", "bob"):
        x = json.loads(identity_file(tmp_path / name).read_text())["x"]  # identity private key
        secrets[f"{name} identity x"] = _hex_bytes(x)
        secrets[f"{name} identity x (decimal)"] = str(int(x, 16))
    records = [json.loads(line) for p in keylogs.values() for line in p.read_text().splitlines()]
    assert len(records) >= 2
    for n, rec in enumerate(records):  # every key the clients logged, whatever its name
        for field, value in rec.items():
            if isinstance(value, str) and len(value) >= 16 and _is_hex(value):
                secrets[f"keylog {n} {field}"] = _hex_bytes(value)
                if "private" in field:
                    secrets[f"keylog {n} {field} (decimal)"] = str(int(value, 16))
    assert len(secrets) > 10
    assert_no_leaks(wire, secrets)


def identity_file(home: Path) -> Path:
    """The identity file under a client home, wherever the client's layout puts it."""
    found = sorted(home.rglob("identity.json"))
    assert found, f"no identity.json under {home}"
    return found[0]


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _hex_bytes(text: str) -> bytes:
    return bytes.fromhex(text if len(text) % 2 == 0 else "0" + text)
