"""`kill -9` of a real client mid-conversation, at random points, loses nothing and shows nothing
twice; the home is private like ~/.ssh; the debug key log holds no long-term secret."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
import time

from parley_client.batch import EXIT_CONFIG
from tests.support.clients import clean_env
from tests.support.servers import wait_for
from tests.support.tap import tapped_relay_fixture  # noqa: F401 - fixture

KILLS = 3  # restarts per test; each costs a handshake, and three already cover the phases
TEXTS = 18


def _seed() -> int:
    """A fresh seed per run (printed on failure) unless PARLEY_CRASH_SEED pins one."""
    return int(os.environ.get("PARLEY_CRASH_SEED") or time.time_ns() % 1_000_000)


def _texts(tag: str) -> list[str]:
    return [f"{tag} {i:02d}" for i in range(TEXTS)]


def test_kill_9_of_the_receiver_loses_nothing_and_shows_nothing_twice(
    tapped_relay, batch_clients, tmp_path
):
    seed = _seed()
    rng = random.Random(seed)
    relay = tapped_relay()
    lossy = random.Random(seed + 1)
    # The relay loses half of bob's receipts, so at every kill some texts have been shown but
    # not receipted: alice sends them again, and only bob's memory on disk can drop them.
    relay.tap.policy = lambda e: (
        []
        if e.event == "received_message" and e.sender_name == "bob" and lossy.random() < 0.5
        else None
    )
    said = _texts("to bob")
    kills = set(rng.sample(range(2, TEXTS - 2), KILLS))
    alice = batch_clients("alice", "crash-r", relay.url, "--resend-after", "1")
    bobs = [batch_clients("bob", "crash-r", relay.url, home=tmp_path / "bob")]
    bobs[0].wait_secure()
    for i, text in enumerate(said):
        alice.send(text)
        time.sleep(rng.uniform(0.0, 0.2))
        if i in kills:
            bobs[-1].proc.kill()  # SIGKILL: no chance to save anything
            bobs[-1].proc.wait(10)
            time.sleep(rng.uniform(0.0, 0.5))
            bobs.append(batch_clients("bob", "crash-r", relay.url, home=tmp_path / "bob"))
    assert alice.wait(120) == 0, f"seed {seed}: {alice.stderr()}"

    def shown() -> list[str]:
        return [text for bob in bobs for text in bob.received()]

    # alice is done once every text is at least stored at the relay, so the last bob may
    # still be receiving its backlog: he is asked to leave once he has shown all of it.
    wait_for(lambda: len(shown()) >= len(said), 120, 0.2, f"seed {seed}: every text shown")
    assert bobs[-1].wait(60) == 0
    assert shown() == said, f"seed {seed}, kills after {sorted(kills)}"


def test_kill_9_of_the_sender_loses_nothing_and_shows_nothing_twice(
    relay_factory, batch_clients, tmp_path
):
    seed = _seed()
    rng = random.Random(seed)
    relay = relay_factory()
    said = _texts("to alice")
    kills = set(rng.sample(range(1, TEXTS - 1), KILLS))
    alice = batch_clients("alice", "crash-s", relay.url)
    bobs = [batch_clients("bob", "crash-s", relay.url, "--resend-after", "1", home=tmp_path / "b")]
    for i, text in enumerate(said):
        bob = bobs[-1]
        bob.send(text)
        # acknowledged: the client says it is queued (it is on disk by then)
        bob.wait_event(lambda e, t=text: e.get("event") == "queued" and e["text"] == t)
        if i in kills:
            time.sleep(rng.uniform(0.0, 0.3))  # sealing, sending, receipting: anywhere
            bob.proc.kill()
            bob.proc.wait(10)
            bobs.append(
                batch_clients(
                    "bob", "crash-s", relay.url, "--resend-after", "1", home=tmp_path / "b"
                )
            )
    status = bobs[-1].wait(120)
    assert status == 0, (
        f"seed {seed}: {bobs[-1].stderr()}\nalice: {alice.stderr()}\n{alice.raw[-40:]}"
    )
    assert alice.wait_received(TEXTS, timeout=60) == said
    assert alice.wait(60) == 0
    assert alice.received() == said, f"seed {seed}, kills after {sorted(kills)}"


def _parley(tmp_path, *args, env=None, stdin="") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "parley_client", "--batch", "--timeout", "1", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(**(env or {})),
        timeout=60,
    )


def test_home_and_key_file_readable_by_others_are_refused_naming_the_chmod(relay_factory, tmp_path):
    relay = relay_factory()
    home = tmp_path / "home"
    args = ("--name", "alice", "--room", "perm", "--relay", relay.url, "--home", str(home))
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    run = _parley(tmp_path, *args)
    assert run.returncode == EXIT_CONFIG
    assert run.stderr.strip().splitlines() == [
        f"parley: error: folder {home} is accessible by group or others (mode 755); "
        f"fix it with: chmod 700 {home}"
    ]
    assert not (home / "identity.json").exists()
    home.chmod(0o700)
    assert _parley(tmp_path, *args).returncode == 0  # creates the identity, nothing to send
    key = home / "identity.json"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key.chmod(0o644)
    run = _parley(tmp_path, *args)
    assert run.returncode == EXIT_CONFIG and f"chmod 600 {key}" in run.stderr
    assert "Traceback" not in run.stderr


def test_key_log_is_loud_new_private_and_holds_no_long_term_secret(
    relay_factory, batch_clients, tmp_path
):
    relay = relay_factory()
    logs = {n: tmp_path / f"keys-{n}.jsonl" for n in ("alice", "bob")}
    alice = batch_clients(
        "alice", "klog", relay.url, env={"PARLEY_KEYLOG_FILE": str(logs["alice"])}
    )
    bob = batch_clients("bob", "klog", relay.url, env={"PARLEY_KEYLOG_FILE": str(logs["bob"])})
    alice.send("hi")
    assert bob.wait_received(1) == ["hi"]
    assert alice.wait() == 0 and bob.wait() == 0
    assert "DEBUG KEY LOG IS ON" in alice.stderr()
    x = json.loads((tmp_path / "alice" / "identity.json").read_text())["x"].lower()
    for path in logs.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text().lower()
        assert x not in text and "private" not in text and "dh_" not in text
        records = [json.loads(line) for line in text.splitlines()]
        assert records and all(len(r) > 1 for r in records)  # it does log session keys

    # an existing file or a symlink is never written to
    existing = tmp_path / "exists.jsonl"
    existing.write_text("keep me\n")
    link = tmp_path / "link.jsonl"
    os.symlink(tmp_path / "target.jsonl", link)
    for path in (existing, link):
        args = ("--name", "carol", "--room", "klog2", "--relay", relay.url)
        run = _parley(
            tmp_path,
            *args,
            "--home",
            str(tmp_path / "carol"),
            env={"PARLEY_KEYLOG_FILE": str(path)},
        )
        assert run.returncode == EXIT_CONFIG and "already exists" in run.stderr, run.stderr
    assert existing.read_text() == "keep me\n" and not (tmp_path / "target.jsonl").exists()
