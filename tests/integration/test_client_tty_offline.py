"""Offline delivery as people see it in the terminal: the sender's ✓ for a line the relay
stored for an away contact, and the receiver's backlog under "while you were away" with the
sender's times, then live chat as usual."""

from __future__ import annotations

ROOM = "tty-offline"


def test_sender_sees_stored_and_receiver_sees_the_backlog_divider(
    relay_factory, terminal, batch_clients, tmp_path
):
    relay = relay_factory()
    bob = batch_clients("bob", ROOM, relay.url, home=tmp_path / "bob")
    bob.wait_event(lambda e: e.get("event") == "prekeys", 60, "prekeys published")
    assert bob.wait() == 0  # Bob has joined once and left; his seat stays his

    alice = terminal(
        "--name", "alice", "--room", ROOM, "--relay", relay.url, "--home", str(tmp_path / "a"),
    )  # fmt: skip
    alice.expect("alice>")
    alice.line("are you there?")
    alice.expect(r"is away: your messages are sealed for them")
    alice.expect(r"are you there\?.*✓")  # stored at the relay: one tick, not two
    alice.ctrl("d")
    alice.expect(r"1 message\(s\) were not delivered \(1 stored in the relay's mailbox: ✓\)")
    assert alice.wait_exit() == 0

    back = terminal(
        "--name", "bob", "--room", ROOM, "--relay", relay.url, "--home", str(tmp_path / "bob"),
    )  # fmt: skip
    back.expect("── while you were away ──")
    back.expect(r"\[\d\d:\d\d:\d\d\] alice: are you there\?")  # the sender's time
    back.expect(r"end of what arrived while you were away \(1\)")
    back.ctrl("d")
    assert back.wait_exit() == 0
    assert "Traceback" not in back.screen_text()
