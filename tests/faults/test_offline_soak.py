"""Offline soak: peers go away for a random while and come back; nothing is lost or shown twice.

PAIRS pairs of real `parley --batch --json` processes on two relay replicas and a real
redis-server with AOF (as compose runs it). Every online client sends numbered lines
(tests/faults/checker.py texts) at RATE per second. At random times (seeded; the seed is
printed, PARLEY_OFFLINE_SOAK_SEED replays a run) one member of a pair goes offline, alternately
by a clean exit (SIGTERM: it leaves as on Ctrl-C, exit 130) and by SIGKILL (nothing saved at
exit), each once its last line was `queued` (durable in its home), while its peer keeps
sending. After a random period it comes back: a new process with the same home, first trying
the other replica. Each pair alternates which member goes away, so both directions are soaked.

At the end every receiver must show every line exactly once, in its sender's order (across all
its processes), and every offline period must have taken effect: lines the peer sent meanwhile
were acked `stored` (the sender's `stored` events), the returning process got them from its
mailbox (the "while you were away" divider) and, after a clean exit, showed them as backlog
(`message` events with `backlog`). The figures go to offline-soak-report.json.

Duration: PARLEY_OFFLINE_SOAK_SECONDS of sending (default DEFAULT_SECONDS, part of `make
test`); offline periods last between max(10 s, seconds/6) and 2.5 times that, so a 900 s run has
periods of 2.5-5 minutes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from parley_client.batch import EXIT_INTERRUPTED
from tests.faults.checker import assert_zero_loss, check_stream, make_text, parse_shown, summarize
from tests.faults.harness import ParleyProcess, Timeline
from tests.faults.test_soak import report_dir
from tests.support.servers import RedisServer, RelayProcess, wait_for

pytestmark = pytest.mark.faults

PAIRS = 4
RATE = 1.0  # lines per second per online client
# The CI length: about two offline periods per pair, under ~90 s of wall time in all.
DEFAULT_SECONDS = 50.0
MIN_SECONDS = 30.0  # one offline period of at least 10 s needs this much sending time
MIN_AWAY = 10.0  # shortest offline period: the relay notices the exit within a few seconds
HEARTBEAT = ["--heartbeat-seconds", "5"]
SETTLE = 3.0  # an offline period's first seconds: the relay may still see the old connection
MODES = ("clean", "kill")


@dataclass
class Away:
    """One offline period of `member`, whose `peer` keeps sending."""

    member: str
    peer: str
    mode: str
    start: float  # planned offsets from the first line
    end: float
    gone_at: float = 0.0  # wall clock: the old process had exited
    back_at: float = 0.0  # wall clock: the new process was started
    back: ParleyProcess | None = field(default=None, repr=False)


def plan(rng: random.Random, seconds: float) -> list[Away]:
    """Per pair, alternating members and modes, periods of [away, 2.5 away] s apart by a gap."""
    shortest = max(MIN_AWAY, seconds / 6)
    periods = []
    for i in range(PAIRS):
        names = [f"a{i}", f"b{i}"]
        first = rng.randrange(2)
        t = rng.uniform(2.0, shortest / 2)
        k = 0
        while True:
            length = rng.uniform(shortest, 2.5 * shortest)
            if t + length > seconds:
                length = seconds - t  # the last period ends with the sending
            if length < shortest:
                break
            member = names[(first + k) % 2]
            mode = MODES[(i + k) % 2]
            periods.append(Away(member, names[(first + k + 1) % 2], mode, t, t + length))
            t += length + rng.uniform(0.5 * shortest, shortest)
            k += 1
    return sorted(periods, key=lambda p: p.start)


class OfflineSoak:
    def __init__(self, tmp: Path, seconds: float, seed: int):
        self.tmp = tmp
        self.seconds = seconds
        self.periods = plan(random.Random(seed), seconds)
        self.timeline = Timeline()
        self.redis = RedisServer(appendonly=True)
        self.relays: list[RelayProcess] = []
        self.current: dict[str, ParleyProcess | None] = {}
        self.history: dict[str, list[ParleyProcess]] = {}  # every process of a member, in order
        self.replica: dict[str, int] = {}
        self.peer_of: dict[str, str] = {}
        self.sent: dict[str, int] = {}
        self.written: dict[ParleyProcess, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def launch(self, name: str) -> ParleyProcess:
        urls = [r.url for r in self.relays]
        first = self.replica[name]
        room = f"offline{name[1:]}"
        proc = ParleyProcess(
            name, room, [urls[first], urls[1 - first]], self.tmp / name, "--timeout", "120"
        )
        self.history[name].append(proc.start())
        self.written[proc] = 0
        return proc

    def start(self) -> None:
        self.redis.start()
        for _ in range(2):
            self.relays.append(RelayProcess(self.redis.url, extra_args=HEARTBEAT).start())
        self.timeline.note(f"redis {self.redis.port} (AOF), relays {[r.port for r in self.relays]}")
        for i in range(PAIRS):
            for k, (me, other) in enumerate(((f"a{i}", f"b{i}"), (f"b{i}", f"a{i}"))):
                self.peer_of[me], self.sent[me], self.history[me] = other, 0, []
                self.replica[me] = (i + k) % 2  # every pair spans both replicas
                self.current[me] = self.launch(me)
        wait_for(
            lambda: all(c.of("secure") for c in self.current.values()),
            timeout=90,
            interval=0.5,
            what="every pair secure",
        )
        self.timeline.note(f"{len(self.current)} clients secure; {len(self.periods)} periods")

    def cleanup(self) -> None:
        for procs in self.history.values():
            for p in procs:
                p.cleanup()
        for r in self.relays:
            r.cleanup()
        self.redis.cleanup()

    def feed(self) -> None:
        names = sorted(self.current)
        t0, tick = time.monotonic(), 0
        while not self.stop.is_set():
            for k, name in enumerate(names):
                due = t0 + (tick + k / len(names)) / RATE
                if due > time.monotonic() and self.stop.wait(due - time.monotonic()):
                    return
                with self.lock:
                    proc = self.current[name]
                    if proc is None:
                        continue  # away: this person types nothing meanwhile
                    self.sent[name] += 1
                    self.written[proc] += 1
                    proc.write(make_text(name, self.sent[name], time.time()))
            tick += 1

    def go_away(self, p: Away) -> None:
        with self.lock:
            proc, self.current[p.member] = self.current[p.member], None
        # Only what the client made durable counts as typed (stdin it never read is not).
        n = self.written[proc]
        wait_for(lambda: len(proc.of("queued")) >= n, timeout=60, interval=0.1, what="queued")
        # Not EOF: a batch client leaves after a quiet second, never while its peer sends.
        proc.proc.send_signal(signal.SIGKILL if p.mode == "kill" else signal.SIGTERM)
        proc.proc.wait(timeout=60)
        p.gone_at = time.time()
        self.timeline.note(f"{p.member} offline ({p.mode}, exit {proc.proc.returncode})")

    def come_back(self, p: Away) -> None:
        self.replica[p.member] = 1 - self.replica[p.member]
        with self.lock:
            p.back_at = time.time()
            p.back = self.current[p.member] = self.launch(p.member)
        self.timeline.note(f"{p.member} back on replica {self.replica[p.member]}")

    def run(self) -> None:
        feeder = threading.Thread(target=self.feed, daemon=True, name="feeder")
        start = time.monotonic()
        feeder.start()
        pairs = [threading.Thread(target=self.run_pair, args=(i, start)) for i in range(PAIRS)]
        try:
            for t in pairs:
                t.start()
            for t in pairs:
                t.join(timeout=self.seconds + 400)
            time.sleep(max(0.0, start + self.seconds - time.monotonic()))
        finally:
            self.stop.set()
            feeder.join(timeout=10)
        self.timeline.note(f"stopped sending: {sum(self.sent.values())} lines")

    def run_pair(self, i: int, start: float) -> None:
        for p in self.periods:
            if p.member[1:] != str(i):
                continue
            time.sleep(max(0.0, start + p.start - time.monotonic()))
            self.go_away(p)
            time.sleep(max(0.0, start + p.end - time.monotonic()))
            self.come_back(p)

    def shown(self, receiver: str) -> list[tuple[float, dict]]:
        """Every `message` event of every process of `receiver`, in order."""
        return [
            (at, e)
            for proc in self.history[receiver]
            for at, e in proc.timed_events()
            if e.get("event") == "message"
        ]

    def distinct(self, receiver: str) -> int:
        items = (parse_shown(str(e.get("text", "")), at) for at, e in self.shown(receiver))
        return len({i.seq for i in items if i is not None})

    def drain(self, timeout: float = 120.0) -> None:
        def complete() -> bool:
            return all(self.distinct(self.peer_of[s]) >= n for s, n in self.sent.items())

        try:
            wait_for(complete, timeout=timeout, interval=0.5, what="delivery")
            self.timeline.note("every line shown; closing stdin")
        except TimeoutError:
            self.timeline.note("drain deadline passed with lines missing")
        for c in self.current.values():
            c.close_stdin()
        for c in self.current.values():
            try:
                c.proc.wait(timeout=90)
            except Exception:  # noqa: BLE001 - reported as a bad exit below
                c.stop()

    def report(self):
        streams, unparsable = [], 0
        for sender, count in sorted(self.sent.items()):
            shown = []
            for at, e in self.shown(self.peer_of[sender]):
                item = parse_shown(str(e.get("text", "")), at)
                unparsable += item is None
                shown += [item] if item is not None else []
            streams.append(check_stream(sender, self.peer_of[sender], count, shown))
        return summarize(streams, unparsable)

    def effects(self) -> list[dict]:
        """Per offline period: lines the peer sent meanwhile were acked `stored`, and the
        returning process got them from its mailbox (the "while you were away" divider). After
        a clean exit the backlog is shown under it. After SIGKILL it is too, as the ratchet
        state is saved after every envelope opened, but not required: a kill between opening
        an envelope and that save loses that one message key, and what follows it is held
        until the sender's live resend (counted in `unopened_reports`)."""
        out = []
        for p in self.periods:
            stored = 0
            for proc in self.history[p.peer]:
                for e in proc.of("stored"):
                    item = parse_shown(str(e.get("text", "")), 0.0)
                    if item and p.gone_at + SETTLE <= item.sent <= p.back_at:
                        stored += 1
            events = p.back.events if p.back else []
            divider = any(e.get("divider") == "away" for e in events)
            shown = sum(1 for e in events if e.get("event") == "message" and e.get("backlog"))
            unopened = sum(1 for e in events if "could not be opened" in str(e.get("message")))
            seen = stored > 0 and divider and (shown > 0 or p.mode == "kill")
            row = {"member": p.member, "mode": p.mode, "away_s": round(p.back_at - p.gone_at, 1)}
            row |= {"stored": stored, "backlog_shown": shown, "unopened_reports": unopened}
            out.append({**row, "divider": divider, "seen": seen})
        return out

    def dump(self, folder: Path) -> None:
        """Every process's stdout (with read times) and stderr, and the relay logs."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, procs in self.history.items():
            for n, proc in enumerate(procs):
                lines = "".join(f"{at:.3f} {line}\n" for at, line in list(proc.lines))
                (folder / f"{name}.{n}.out").write_text(lines)
                (folder / f"{name}.{n}.err").write_text(proc.stderr())
        for i, r in enumerate(self.relays):
            (folder / f"relay{i}.log").write_text(r.log())

    def problems(self) -> dict:
        """Bad exits (SIGTERM not 130, the final one not 0), tracebacks, non-JSON output."""
        found = {}
        ends = {name: [] for name in self.history}  # expected exit status of each process
        for p in self.periods:
            ends[p.member].append(-signal.SIGKILL if p.mode == "kill" else EXIT_INTERRUPTED)
        for name, procs in self.history.items():
            for n, proc in enumerate(procs):
                expected = ends[name][n] if n < len(ends[name]) else 0
                issues = []
                if proc.proc.returncode != expected:
                    issues.append(f"exit {proc.proc.returncode}, not {expected}")
                if "Traceback" in proc.stderr():
                    issues.append("traceback on stderr")
                if proc.non_json_lines():
                    issues.append(f"non-JSON stdout: {proc.non_json_lines()[:3]}")
                if issues:
                    found[f"{name}#{n}"] = {"issues": issues, "stderr": proc.stderr()[-1500:]}
        return found


def config() -> tuple[float, int]:
    seconds = float(os.environ.get("PARLEY_OFFLINE_SOAK_SECONDS") or DEFAULT_SECONDS)
    if seconds < MIN_SECONDS:
        raise ValueError(f"PARLEY_OFFLINE_SOAK_SECONDS must be at least {MIN_SECONDS:g}")
    seed = int(os.environ.get("PARLEY_OFFLINE_SOAK_SEED") or random.SystemRandom().randrange(10**6))
    return seconds, seed


@pytest.mark.timeout(int(config()[0] * 2) + 500)
def test_offline_soak_zero_loss_zero_duplicates_with_peers_away(tmp_path):
    seconds, seed = config()
    print(f"\noffline soak seed={seed} (PARLEY_OFFLINE_SOAK_SEED={seed} replays it)", flush=True)
    soak = OfflineSoak(tmp_path, seconds, seed)
    began = time.monotonic()
    try:
        soak.start()
        soak.run()
        soak.drain()
        report = soak.report()
        effects = soak.effects()
        problems = soak.problems()
        relay_tracebacks = sum(r.log().count("Traceback") for r in soak.relays)
        soak.dump(report_dir() / "offline-clients")
    finally:
        soak.cleanup()
    modes = [p.mode for p in soak.periods]
    figures = {
        "seed": seed,
        "load_average": os.getloadavg(),
        "config": {"pairs": PAIRS, "send_seconds": seconds, "rate_per_client": RATE},
        "wall_seconds": round(time.monotonic() - began, 1),
        "timeline": [[round(t, 2), text] for t, text in soak.timeline.notes],
        **report.as_dict(),
        "offline_periods": effects,
        "client_problems": problems,
        "relay_tracebacks": relay_tracebacks,
    }
    path = report_dir() / "offline-soak-report.json"
    path.write_text(json.dumps(figures, indent=2))
    print(
        f"\nSOAK FIGURES (offline): seed={seed} periods={len(modes)} "
        f"(clean={modes.count('clean')} kill={modes.count('kill')}) "
        f"stored={sum(e['stored'] for e in effects)} "
        f"backlog_shown={sum(e['backlog_shown'] for e in effects)} {report.summary()} "
        f"wall={figures['wall_seconds']}s\nwritten to {path}"
    )
    assert_zero_loss(report, figures, problems, relay_tracebacks)
    # The faults happened and were felt: both modes, both directions, a mailbox each time.
    assert set(modes) == set(MODES), modes
    assert {p.member[0] for p in soak.periods} == {"a", "b"}, soak.periods
    missing = [e for e in effects if not e["seen"]]
    assert not missing, missing
