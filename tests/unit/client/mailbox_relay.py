"""A sans-IO stand-in for the relay's offline delivery (DECISIONS.md, issue 15) for core tests:
seats that stay reserved, a mailbox per seat, prekeys with one-time keys popped once, acks
delivered later (as over a socket), and knobs for a hostile relay (replay, withhold, full)."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

from parley_client.contacts import MemoryContacts
from parley_client.core import ChatCore, Event
from parley_client.roomstate import MemoryRoomState
from tests.unit.client.conftest import FORWARD, cached_identity


@dataclass
class Member:
    name: str
    core: ChatCore | None = None
    state: MemoryRoomState = field(default_factory=MemoryRoomState)
    contacts: MemoryContacts = field(default_factory=MemoryContacts)
    events: list[Event] = field(default_factory=list)
    mailbox: list[dict] = field(default_factory=list)  # {"id", "at", "payload"}
    bundle: dict | None = None
    one_time: list[dict] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)

    def kinds(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def texts(self) -> list[str]:
        return [e.text for e in self.kinds("message")]

    def infos(self) -> list[str]:
        return [e.text for e in self.events if e.kind in ("info", "warning", "error")]


class MailboxRelay:
    """Two members of one room; ``join``/``leave`` them, ``pump`` to deliver."""

    def __init__(self, clock, room: str = "demo", names=("alice", "bob")):
        self.clock, self.room = clock, room
        self.members = {name: Member(name) for name in names}
        self.live: set[str] = set()
        self.queue: deque = deque()
        self.ids = itertools.count(1)
        self.full = False  # answer every store with mailbox_full
        self.replay_one_time: dict | None = None  # hand this one-time key out again
        self.withhold_one_time = False
        self.drop_acks = False  # ignore mailbox_ack (entries come again next join)
        self._last: dict[str, list] = {}  # per member: [tag] of the newest "message" sent

    def __getitem__(self, name: str) -> Member:
        return self.members[name]

    def other(self, name: str) -> Member:
        return next(m for n, m in self.members.items() if n != name)

    def start(self, name: str, **options) -> ChatCore:
        """A (new) client process for ``name`` on its durable state (a restart, if any)."""
        member = self.members[name]
        if member.core is not None:
            member.core.room_state = member.state
        member.events.clear()

        def send(event, payload, _name=name):
            self._on_send(_name, event, payload, None)

        def request(event, payload, on_reply, _name=name):
            self._on_send(_name, event, payload, on_reply)

        def on_event(event, _name=name):
            member.events.append(event)
            if event.kind == "sent" and self._last.get(_name) is not None:
                self._last[_name][0] = event.data["id"]  # as App/Transport.tag_last do

        member.core = ChatCore(
            cached_identity(name), member.contacts, self.room, send, on_event,
            clock=self.clock, state=member.state, request=request, **options,
        )  # fmt: skip
        return member.core

    def join(self, name: str) -> None:
        member = self.members[name]
        self.live.add(name)
        member.core.connected()
        for entry in list(member.mailbox):
            self.queue.append((name, "stored_message", dict(entry)))
        self.queue.append((name, "mailbox_done", {"count": len(member.mailbox)}))
        if len(self.live) == 2:
            for other in self.live:
                self.queue.append((other, "KEY_EXCHANGE", 1))
        self.pump()

    def leave(self, name: str) -> None:
        self.live.discard(name)
        self.members[name].core.disconnected()
        other = self.other(name).name
        if other in self.live:
            self.queue.append((other, "peer_left", {"name": name}))
        self.pump()

    def away_tick(self) -> None:
        """Let the away probe time pass, tick every live core, deliver."""
        self.clock.now += 2.0
        for name in self.live:
            self.members[name].core.tick()
        self.pump()

    def pump(self, limit: int = 100_000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            to, event, payload = self.queue.popleft()
            if to == "reply":
                event(payload)  # an ack callback
            elif to in self.live:
                self.members[to].core.handle(event, payload)
        raise AssertionError("never went quiet")

    # ----- the relay's side --------------------------------------------------------------
    def _reply(self, on_reply, reply) -> None:
        if on_reply is not None:
            self.queue.append(("reply", on_reply, reply))

    def _on_send(self, name, event, payload, on_reply) -> None:
        if name not in self.live:
            return
        me, other = self.members[name], self.other(name)
        if event == "prekeys":
            if payload.get("bundle") is not None:
                me.bundle = payload["bundle"]
            me.one_time.extend(payload.get("one_time", []))
            self._reply(on_reply, {"ok": True, "one_time_left": len(me.one_time)})
        elif event == "fetch_prekeys":
            self._fetch(other, on_reply)
        elif event == "mailbox_ack":
            if not self.drop_acks:
                me.acked.extend(payload["ids"])
                removed = sum(1 for e in me.mailbox if e["id"] in payload["ids"])
                me.mailbox = [e for e in me.mailbox if e["id"] not in payload["ids"]]
                self._reply(on_reply, {"ok": True, "removed": removed})
        elif event == "message":
            self._message(name, other, payload, on_reply)
        elif event in FORWARD and other.name in self.live:
            self.queue.append((other.name, FORWARD[event], payload))

    def _fetch(self, other: Member, on_reply) -> None:
        if other.bundle is None:
            self._reply(on_reply, {"ok": False, "code": "no_peer"})
            return
        one_time = None
        if self.replay_one_time is not None:
            one_time = self.replay_one_time
        elif other.one_time and not self.withhold_one_time:
            one_time = other.one_time.pop(0)
        self._reply(on_reply, {"ok": True, "bundle": other.bundle, "one_time": one_time})

    def _message(self, name, other: Member, payload, on_reply) -> None:
        # The ack reaches the transport, which names the text (tag) for the core.
        tag = self._last[name] = [None]
        core = self.members[name].core

        def tagged(reply):
            if tag[0] is not None:
                core.message_acked(tag[0], reply)

        if other.name in self.live:
            self.queue.append((other.name, "received_message", payload))
            self._reply(tagged, {"ok": True, "id": f"live-{next(self.ids)}"})
        elif self.full:
            self._reply(tagged, {"ok": False, "code": "mailbox_full"})
        else:
            entry = {"id": f"{next(self.ids)}-0", "at": 1, "payload": payload}
            other.mailbox.append(entry)
            self._reply(tagged, {"ok": True, "id": entry["id"], "stored": True})
