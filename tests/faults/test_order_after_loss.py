"""Regression: a message the relay could not forward must not be shown after later ones.

Reproduction (found by the soak): alice and bob on different replicas. Redis goes down;
alice's message 1 cannot be published (the relay answers `unavailable`) and stays in her
outbox, to be re-sent after `--resend-after`. Redis comes back; alice's message 2 goes through
at once. Without ordering on the receiving side bob shows 2, then 1 when it is re-sent.
"""

from __future__ import annotations

import pytest

from parley_client.messages import BadPlaintext, InOrder, Outbox, Plaintext, SeenIds, new_text
from tests.faults.harness import ParleyProcess
from tests.support.servers import wait_for


def shown(proc: ParleyProcess) -> list[str]:
    return [e["text"] for e in proc.of("message")]


def texts(*bodies: str) -> list[Plaintext]:
    return [new_text(b) for b in bodies]


def test_sender_names_the_unreceipted_text_before_each_one():
    box = Outbox()
    peer_key = "k" * 16  # texts are bound to the recipient's key; only its receipt counts
    one, two, three = (box.add(m, to=peer_key) for m in texts("1", "2", "3"))
    assert box.stamped(one).after is None
    assert box.stamped(three).after == two.message.id
    assert box.delivered(two.message.id, from_key="x" * 16) is None  # another key: no
    box.delivered(two.message.id, from_key=peer_key)  # receipted: three now follows one
    assert box.stamped(three).after == one.message.id
    decoded = Plaintext.decode(box.stamped(three).encode())
    assert decoded.after == one.message.id and decoded.body == "3"


def test_receiver_holds_a_text_until_the_one_it_follows_is_shown():
    seen, order = SeenIds(), InOrder()
    box = Outbox()
    items = [box.add(m) for m in texts("1", "2", "3")]
    one, two, three = (box.stamped(i) for i in items)
    assert order.accept(three, seen) == []  # held: 2 not shown yet
    assert order.accept(two, seen) == []  # held: 1 not shown yet
    assert [m.body for m in order.accept(one, seen)] == ["1", "2", "3"]
    assert order.accept(two, seen) is None  # a re-sent copy is a duplicate
    assert len(order) == 0


def test_plaintext_without_after_still_decodes_and_bad_after_is_rejected():
    plain = new_text("old client")
    assert Plaintext.decode(plain.encode()).after is None
    bad = plain.encode().replace(b'"ts"', b'"after":["x"],"ts"')
    with pytest.raises(BadPlaintext):
        Plaintext.decode(bad)


def sends(proc: ParleyProcess) -> list[tuple[str, int]]:
    """(text, attempt) of every `sent` line, in the order the client sent them."""
    return [(e["text"], e["attempt"]) for e in proc.of("sent")]


# "one" must not be re-sent before "two" went out, or the bug is not reproduced: this leaves
# Redis's restart and the relays' recovery far more time than they take on a loaded machine.
RESEND_AFTER_S = 12


@pytest.mark.faults
def test_message_lost_in_redis_outage_is_shown_in_order(redis_server, relay_factory, tmp_path):
    hb = ["--heartbeat-seconds", "2"]
    r1 = relay_factory(redis_server.url, extra_args=hb)
    r2 = relay_factory(redis_server.url, extra_args=hb)
    resend = ("--resend-after", str(RESEND_AFTER_S))
    alice = ParleyProcess("alice", "order", [r1.url], tmp_path / "alice", *resend)
    bob = ParleyProcess("bob", "order", [r2.url], tmp_path / "bob", *resend)
    try:
        alice.start()
        bob.start()
        wait_for(lambda: alice.of("secure") and bob.of("secure"), timeout=30, what="secure")
        alice.write("zero")
        wait_for(lambda: shown(bob) == ["zero"], timeout=10, what="zero")

        redis_server.stop()
        alice.write("one")  # the relay cannot publish it: alice gets `unavailable`
        wait_for(
            lambda: any(e.get("code") == "unavailable" for e in alice.of("relay_error")),
            timeout=10,
            what="unavailable",
        )
        redis_server.start()
        wait_for(lambda: r1.get("/healthz")[0] == 200, timeout=15, what="r1 healthy")
        wait_for(lambda: r2.get("/healthz")[0] == 200, timeout=15, what="r2 healthy")
        alice.write("two")  # goes through at once, before "one" is re-sent
        wait_for(lambda: ("two", 1) in sends(alice), timeout=10, what="two sent")
        wait_for(lambda: len(shown(bob)) >= 3, timeout=60, what="all three shown")
        # The bug's scene really happened: "two" went out before "one" was sent again.
        order = sends(alice)
        assert order.index(("one", 1)) < order.index(("two", 1)) < order.index(("one", 2)), order
        # A barrier: once "three" is shown, anything delivered before it has been shown too.
        alice.write("three")
        wait_for(lambda: len(shown(bob)) >= 4, timeout=30, what="three shown")
        assert shown(bob) == ["zero", "one", "two", "three"]
    finally:
        for p in (alice, bob):
            p.cleanup()
