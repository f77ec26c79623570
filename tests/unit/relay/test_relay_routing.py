"""Routing state in the namespace, without sockets: peer updates ordered by seat version,
early updates for a connection still joining, kicks of a connecting sid, delivery only to
seated connections."""

from __future__ import annotations

import pytest

from parley_relay.app import make_app
from parley_relay.config import Settings
from parley_relay.core import Identity


@pytest.fixture
def ns():
    relay = make_app(Settings(replica_id="A"))
    sent = []
    relay.sio.emit = lambda event, data, **kw: sent.append((event, data, kw.get("to")))
    ns = relay.namespace
    ns.sent = sent
    return ns


def seat(ns, sid, version=10, peers=(("A", "x"),)):
    conn = ns.router.new_connection(sid, Identity("r", sid))
    conn.peers, conn.version = peers, version
    conn.event_version = version  # as after its own join
    ns.conns[sid] = conn
    return conn


def test_a_peer_update_older_than_what_the_connection_knows_is_dropped(ns):
    conn = seat(ns, "s1")
    ns.peer_update("s1", [["B", "stale"]], "KEY_EXCHANGE", 1, 5)
    assert conn.peers == (("A", "x"),) and ns.sent == []
    ns.peer_update("s1", [["B", "new"]], "KEY_EXCHANGE", 1, 11)
    assert conn.peers == (("B", "new"),) and conn.version == 11
    assert ns.sent == [("KEY_EXCHANGE", 1, "s1")]


def test_a_reconciliation_read_does_not_swallow_the_event_of_an_update_in_flight(ns):
    """The peer joined at 12 and announced it (KEY_EXCHANGE); before the announcement
    arrived, the reconciliation loop read the seats at 15 (already listing the peer). The
    peer list of the announcement is stale, its KEY_EXCHANGE is not: it must arrive."""
    conn = seat(ns, "s1")
    conn.peers, conn.version = (("B", "new"),), 15  # what janitor.reconcile does
    ns.peer_update("s1", [["B", "new"]], "KEY_EXCHANGE", 1, 12)
    assert ns.sent == [("KEY_EXCHANGE", 1, "s1")] and conn.version == 15
    ns.peer_update("s1", [["B", "new"]], "KEY_EXCHANGE", 1, 12)  # a repeat: once only
    assert len(ns.sent) == 1


def test_an_update_for_a_joining_connection_is_kept_for_its_handler(ns):
    ns.connecting.add("s2")
    ns.peer_update("s2", [["B", "p"]], "KEY_EXCHANGE", 1, 7)
    ns.peer_update("s2", [["B", "older"]], None, None, 3)
    assert ns.early["s2"] == ([["B", "p"]], "KEY_EXCHANGE", 1, 7)


def test_a_kick_of_a_connecting_sid_is_remembered_not_lost(ns):
    ns.connecting.add("s3")
    ns.drop("s3")
    assert "s3" in ns.kicked


def test_delivery_only_reaches_seated_connections(ns):
    ns.deliver("ghost", "received_message", "x")
    assert ns.sent == []
    seat(ns, "s4")
    ns.on_bus(["m", "s4", "received_message", "hi"])
    assert ns.sent == [("received_message", "hi", "s4")]
