"""The relay's side of offline delivery (issue 15), used by `handlers.RelayNamespace`.

* A `message` whose peer is away (the seat reserved by a secret, nobody connected) is kept
  in that seat's mailbox; the store decides "live or append" atomically with the seats, so
  a message sent while the peer joins is either in the backlog it drains or live after it.
* On the owner's (re)join, before any live event reaches it (they are held meanwhile,
  `RelayNamespace.holding`), its expiry notices, then each stored entry in order
  (`stored_message`), then `mailbox_done {count}`; the held live events follow.
* `mailbox_ack`, `prekeys`, `fetch_prekeys` act only on the connection's own seat (or, to
  fetch, the room's other seat): the seat comes from the connection's secret, never from
  the payload.
"""

from __future__ import annotations

import logging
import time

import gevent

from .core import Connection, Rejection, payload_size
from .logs import log_event
from .mailbox import (
    DRAIN_BATCH,
    EXPIRED_PER_EVENT,
    Full,
    MailboxStore,
    parse_ack,
    parse_fetch,
    parse_prekeys,
)
from .store import Conn

NAMESPACE = "/"
PACE_SECONDS = 0.005  # how often a paced drain looks at the connection's outbound queue
FULL_TEXT = "the relay's storage for offline delivery is full; try again later"


class Held(list):
    """Live events held for a connection until its backlog is out, and their bytes."""

    bytes = 0
    overflow = False


class Offline:
    """Mailbox and prekey work for one relay process (a part of its namespace)."""

    def __init__(self, namespace, mailbox: MailboxStore):
        self.ns = namespace
        self.mailbox = mailbox
        settings = namespace.settings
        # Drain no faster than the client reads: never let the backlog alone push its
        # outbound queue past the cap that evicts slow readers (room for one largest frame).
        self.queue_room = max(0, settings.outbound_queue_bytes - settings.max_frame_bytes)
        self.pace_timeout = settings.idle_timeout
        # Held live events count like queued ones: a member that reads its backlog slowly
        # while its peer floods would otherwise make the relay buffer without end.
        self.held_max = settings.outbound_queue_bytes

    # -- message storage ---------------------------------------------------------------------

    def store(self, sid: str, conn: Connection, payload: object, size: int) -> dict:
        """`message` with no live peer known: keep it for the away peer, or forward it to the
        peer the store found live, or (nobody to keep it for) acknowledge as today."""
        ident = conn.identity
        result = self.mailbox.store(ident.room, ident.secret_hash, payload, size)
        if result.expired:
            self.tell_expired(sid, conn)
        if result.status == "full":
            return self.ns.reject(sid, conn, Rejection("mailbox_full"), "message")
        if result.status == "live":
            peer = (result.peer.replica, result.peer.sid)
            self.ns.send_to(peer, "received_message", payload, sid)
        if result.status == "stored":
            self.ns.metrics.stored.inc()
            return {"ok": True, "id": result.id, "stored": True}
        return None  # the caller acks like a live forward

    # -- the owner's join ---------------------------------------------------------------------

    def drain(self, sid: str, conn: Connection) -> None:
        """Expiry notices, the backlog in order, `mailbox_done`; then the held live events."""
        try:
            if conn.identity.secret_hash:
                self._drain(sid, conn)
        except Exception as exc:  # Redis gone mid-drain: the rest comes at the next join
            error = type(exc).__name__
            log_event(self.ns.log, "drain_failed", logging.WARNING, sid=sid, error=error)
        finally:
            self.release(sid)

    def _drain(self, sid: str, conn: Connection) -> None:
        ident = conn.identity
        for peer in self.mailbox.expire(ident.room, ident.secret_hash):
            self.notify_expired(ident.room, peer)
        self.tell_expired(sid, conn)
        count, after = 0, ""
        while sid in self.ns.conns:
            batch = self.mailbox.backlog(ident.room, ident.secret_hash, after, DRAIN_BATCH)
            for entry in batch:
                if not self._paced(sid):
                    return
                self.ns.server.emit("stored_message", entry.wire(), to=sid, namespace=NAMESPACE)
                count += 1
                self.ns.metrics.drained.inc()
            if len(batch) < DRAIN_BATCH:
                break
            after = batch[-1].id
        if sid in self.ns.conns:
            self.ns.server.emit("mailbox_done", {"count": count}, to=sid, namespace=NAMESPACE)
            log_event(self.ns.log, "mailbox_drained", sid=sid, room=ident.room, count=count)

    def _paced(self, sid: str) -> bool:
        """Wait until the connection's outbound queue has room; False if it never does."""
        server = self.ns.server
        eio_sid = server.manager.eio_sid_from_sid(sid, NAMESPACE)
        sock = server.eio.sockets.get(eio_sid) if eio_sid else None
        deadline = time.monotonic() + self.pace_timeout
        while sock is not None and getattr(sock, "queued_bytes", 0) > self.queue_room:
            if sock.closed or time.monotonic() > deadline:
                return False
            gevent.sleep(PACE_SECONDS)
        return sid in self.ns.conns

    def hold(self, sid: str, held: Held, event: str, data: object, sender: str | None) -> None:
        """Keep a live event for after the backlog; past the cap the connection is cut (as
        a slow consumer: it resumes its seat, and gets the backlog again, when it returns)."""
        try:
            held.bytes += payload_size(data) if isinstance(data, str | dict) else 16
        except Rejection:
            held.bytes += self.held_max  # cannot happen: it was size checked when sent
        if held.bytes > self.held_max:
            if not held.overflow:  # cut once; nothing more is held (nor sent) for it
                held.overflow = True
                log_event(self.ns.log, "held_overflow", logging.WARNING, sid=sid)
                rej = Rejection("unavailable", "too much live traffic during the backlog")
                self.ns.deliver_raw(sid, "error", rej.payload())
                gevent.spawn(self.ns._safe, self.ns.server.disconnect, sid, namespace=NAMESPACE)
            return
        held.append((event, data, sender))

    def release(self, sid: str) -> None:
        """Emit the live events held during the drain, in order, then stop holding."""
        held = self.ns.holding.get(sid)
        while held:
            event, data, sender = held.pop(0)
            if sid in self.ns.conns:
                self.ns.server.emit(event, data, to=sid, skip_sid=sender, namespace=NAMESPACE)
        self.ns.holding.pop(sid, None)

    def take_held(self, sid: str) -> list:
        """Stop holding for a connection that goes; the events held so far (a drain still
        releasing them stops: the list it reads is emptied)."""
        held = self.ns.holding.pop(sid, None)
        events = list(held or ())
        if held:
            held.clear()
        return events

    def reroute(self, conn: Connection, held: list) -> None:
        """A connection that goes while live messages are held for it (replaced or closed
        mid-drain): their senders were acked, so each goes to the seat's connection now,
        or into its mailbox. Other held events belonged to that connection only."""
        ident = conn.identity
        for event, data, _ in held:
            if event != "received_message" or not ident.secret_hash:
                continue
            try:
                size = payload_size(data)
                result = self.mailbox.deliver(ident.room, ident.secret_hash, data, size)
                if result.status == "live":
                    self.ns.send_to((result.peer.replica, result.peer.sid), event, data, None)
                elif result.status != "stored":
                    log_event(self.ns.log, "held_lost", logging.WARNING, code=result.status)
            except Exception as exc:  # Redis gone: as any live line to a vanished connection
                error = type(exc).__name__
                log_event(self.ns.log, "reroute_failed", logging.WARNING, error=error)

    # -- expiry notices ------------------------------------------------------------------------

    def tell_expired(self, sid: str, conn: Connection) -> None:
        """Hand a connected sender seat its expiry notices (`mailbox_expired {ids}`)."""
        ids = self.mailbox.take_expired(conn.identity.room, conn.identity.secret_hash)
        for i in range(0, len(ids), EXPIRED_PER_EVENT):
            self.ns.deliver(sid, "mailbox_expired", {"ids": ids[i : i + EXPIRED_PER_EVENT]})

    def notify_expired(self, room: str, peer: Conn) -> None:
        """Tell a live sender connection (here or on its replica) to fetch its notices."""
        if peer.replica == self.ns.me:
            self.on_notice(peer.sid)
        else:
            self.ns._safe(self.ns.bus.send, peer.replica, ["x", peer.sid])

    def on_notice(self, sid: str) -> None:
        conn = self.ns.conns.get(sid)
        if conn is not None and conn.identity.secret_hash:
            self.tell_expired(sid, conn)

    def janitor_round(self) -> int:
        """Expire a round of mailboxes (any replica may); tell the live senders now."""
        told = self.mailbox.expire_all()
        for room, peer in told:
            self.notify_expired(room, peer)
        return len(told)

    # -- client events -------------------------------------------------------------------------

    def handle(self, sid: str, conn: Connection, event: str, args: tuple) -> dict:
        """`mailbox_ack`, `prekeys`, `fetch_prekeys`: rate limited and size checked like
        `message`, then answered by the relay; errors as `error {code, message}` + ack."""
        try:
            self.ns.router.check_offline(conn, event, args)
            if not self.ns.lease.valid():
                raise Rejection("unavailable")
            return self.on_event(sid, conn, event, args)
        except Rejection as rej:
            return self.ns.reject(sid, conn, rej, event)
        except Exception:
            log_event(self.ns.log, "offline_failed", logging.WARNING, exc_info=True, sid=sid)
            return self.ns.reject(sid, conn, Rejection("unavailable"), event)

    def on_event(self, sid: str, conn: Connection, event: str, args: tuple) -> dict:
        """The event's work, once checked; raises Rejection for a bad payload."""
        ident = conn.identity
        if event == "mailbox_ack":
            ids = parse_ack(args)
            return {"ok": True, "removed": self.mailbox.ack(ident.room, ident.secret_hash, ids)}
        if event == "prekeys":
            bundle, one_time = parse_prekeys(args)
            try:
                left = self.mailbox.put_prekeys(ident.room, ident.secret_hash, bundle, one_time)
            except Full:
                raise Rejection("mailbox_full", FULL_TEXT) from None
            return {"ok": True, "one_time_left": left}
        parse_fetch(args)
        found = self.mailbox.fetch_prekeys(ident.room, ident.secret_hash)
        if found is None:
            raise Rejection("no_peer")
        return {"ok": True, "bundle": found.bundle, "one_time": found.one_time}
