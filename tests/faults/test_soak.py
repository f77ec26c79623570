"""Fault-injection soak: 10 pairs of real `parley` processes, two relay replicas, one Redis.

While every client sends numbered messages at a steady rate, the harness
  (a) restarts Redis (everything in it is lost: membership, liveness keys, subscriptions),
  (b) SIGKILLs one relay replica and starts it again on the same port,
  (c) stalls one client's connection for 30 s (a proxy between that client and both relays
      stops forwarding in both directions: only that client is affected), and later
  (d) resets it (every connection dropped, new ones refused) for 30 s;
and, during the stall, from a side thread, attacks the relays as an outsider would
(tests/faults/bounds.py): a 200 MB frame before any CONNECT, a 1 MB-fragment flood, a peer
that never reads, a stranger taking a live member's seat by name, a binary attachment.
Then a checker reads every receiver's output and asserts that each message was shown exactly
once and in its sender's order, and tests/faults/effects.py asserts that every fault took
effect: a resync after each Redis restart, a failover to the survivor after each kill, the
stalled client's messages held for most of the stall, a reconnect after each reset, each
attack refused (close 1009, disconnected, room_full) with the relay's peak RSS within
ATTACK_RSS_BOUND_KB of its own peak just before and the attacked pair undisturbed. Figures
are printed and written to JSON for docs/reliability.md.

Duration: PARLEY_SOAK_SECONDS of sending (default DEFAULT_SECONDS = 80, at least 40, so the
test takes about two minutes); runs of 240 s and more repeat the fault cycle every 120 s.
PARLEY_SOAK_CUT_SECONDS (default 30, at most 30% of a cycle) and PARLEY_SOAK_RATE (messages
per second per client, default 1) tune the load.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.bounds import ATTACK_RSS_BOUND_KB, ATTACKS, run_attack
from tests.faults.checker import assert_zero_loss, check_stream, make_text, parse_shown, summarize
from tests.faults.effects import FaultRecord, fault_effects
from tests.faults.harness import ParleyProcess, Timeline
from tests.support.proxy import TcpProxy
from tests.support.servers import RedisServer, RelayProcess, wait_for

pytestmark = pytest.mark.faults

PAIRS = 10
CROSS_REPLICA_PAIRS = 6  # the rest have both members on one replica
CYCLE_SECONDS = 120.0
MIN_SECONDS = 40.0  # one fault cycle needs this much sending time
# The CI length (part of `make test`): one cycle of every fault, cuts of 24 s (30% of it),
# about two minutes of wall time in all on a loaded 2-core machine.
DEFAULT_SECONDS = 80.0
HEARTBEAT = ["--heartbeat-seconds", "5"]
# The pair whose room a stranger tries to enter under a member's name (not the cut pair).
SEAT_VICTIM_PAIR = 5


@dataclass(frozen=True)
class SoakConfig:
    seconds: float
    cut_seconds: float
    rate: float
    drain_seconds: float = 90.0

    @classmethod
    def from_env(cls) -> SoakConfig:
        env = os.environ
        cfg = cls(
            seconds=float(env.get("PARLEY_SOAK_SECONDS") or DEFAULT_SECONDS),
            cut_seconds=float(env.get("PARLEY_SOAK_CUT_SECONDS") or 30),
            rate=float(env.get("PARLEY_SOAK_RATE") or 1.0),
        )
        if cfg.seconds < MIN_SECONDS:  # 0 once planned zero-length cycles forever
            raise ValueError(f"PARLEY_SOAK_SECONDS must be at least {MIN_SECONDS:g} (one cycle)")
        if cfg.cut_seconds <= 0 or cfg.rate <= 0:
            raise ValueError("PARLEY_SOAK_CUT_SECONDS and PARLEY_SOAK_RATE must be positive")
        return cfg

    def cycle(self) -> float:
        return self.seconds if self.seconds < 2 * CYCLE_SECONDS else CYCLE_SECONDS

    def cut_for(self) -> float:
        """How long each cut lasts: as configured, but both fit in one cycle."""
        return min(self.cut_seconds, 0.3 * self.cycle())

    def faults(self) -> list[tuple[float, str]]:
        """(offset from the first message, action) for every fault, in time order. Every
        cycle has each fault once, the default run included."""
        cycle = self.cycle()
        plan = []
        start = 0.0
        n = 0
        while start + cycle <= self.seconds + 1e-6:
            # Redis first, while the pairs are still spread over both replicas (after a
            # replica is killed its clients stay on the survivor). Then the cut client's
            # network: a stall (bytes wait, sockets stay open), then a reset (every
            # connection dropped, new ones refused).
            plan += [
                (start + 0.10 * cycle, "restart_redis"),
                (start + 0.22 * cycle, f"kill_relay:{n % 2}"),
                (start + 0.34 * cycle, "cut_client:stall"),
                (start + 0.68 * cycle, "cut_client:reset"),
            ]
            start += cycle
            n += 1
        return plan

    def attacks(self) -> list[list[str]]:
        """Per cycle, the bounds attacks (`bounds:<attack>:<relay>`, alternating relays).
        They start once that cycle's stall has begun: it touches only the cut client, so no
        other fault blurs what an attack did, however late a loaded machine runs the plan."""
        cycles = sum(1 for _, action in self.faults() if action == "cut_client:stall")
        return [
            [f"bounds:{name}:{(k + n) % 2}" for k, name in enumerate(ATTACKS)]
            for n in range(cycles)
        ]


def report_dir() -> Path:
    base = os.environ.get("PARLEY_SOAK_REPORT_DIR") or tempfile.gettempdir()
    path = Path(base) / "parley-soak"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Soak:
    """Owns every process of one soak run and the fault schedule."""

    def __init__(self, tmp: Path, cfg: SoakConfig):
        self.tmp = tmp
        self.cfg = cfg
        self.timeline = Timeline()
        self.redis = RedisServer()
        self.relays: list[RelayProcess] = []
        self.proxies: list[TcpProxy] = []
        self.clients: dict[str, ParleyProcess] = {}
        self.peer_of: dict[str, str] = {}
        self.sent: dict[str, int] = {}
        self.cut_name = "b00"
        self.done: list[FaultRecord] = []
        self.attacks: dict[FaultRecord, object] = {}  # bounds attack -> tests.faults.bounds.Attack
        self._done_lock = threading.Lock()
        self._stalls = threading.Semaphore(0)  # released when each stall begins
        self._stop_feeding = threading.Event()

    # ----- set-up ------------------------------------------------------------------------
    def start(self) -> None:
        self.redis.start()
        for _ in range(2):
            relay = RelayProcess(redis_url=self.redis.url, extra_args=HEARTBEAT)
            self.relays.append(relay.start())
        self.timeline.note(f"redis {self.redis.port}, relays {[r.port for r in self.relays]}")
        urls = [r.url for r in self.relays]
        # The cut client reaches both relays only through proxies, so cutting them isolates it
        # (a direct second URL would let it fail over and never notice the cut).
        self.proxies = [TcpProxy(r.port) for r in self.relays]
        for i in range(PAIRS):
            a, b = f"a{i:02d}", f"b{i:02d}"
            first_a = i % 2
            first_b = (i + 1) % 2 if i < CROSS_REPLICA_PAIRS else first_a
            lists = {
                a: [urls[first_a], urls[1 - first_a]],
                b: [urls[first_b], urls[1 - first_b]],
            }
            if b == self.cut_name:
                lists[b] = [self.proxies[first_b].url, self.proxies[1 - first_b].url]
            for me, other in ((a, b), (b, a)):
                self.peer_of[me] = other
                self.sent[me] = 0
                proc = ParleyProcess(
                    me, f"soak{i:02d}", lists[me], self.tmp / me, "--timeout", "120"
                )
                self.clients[me] = proc.start()
        wait_for(
            lambda: all(c.of("secure") for c in self.clients.values()),
            timeout=90,
            interval=0.5,
            what="every pair secure",
        )
        self.timeline.note(f"{len(self.clients)} clients secure")

    def cleanup(self) -> None:
        for c in self.clients.values():
            c.cleanup()
        for p in self.proxies:
            p.close()
        for r in self.relays:
            r.cleanup()
        self.redis.cleanup()

    # ----- load --------------------------------------------------------------------------
    def feed(self) -> None:
        """Every client gets its next numbered line every 1/rate s, clients staggered."""
        names = sorted(self.clients)
        period = 1.0 / self.cfg.rate
        t0 = time.monotonic()
        tick = 0
        while not self._stop_feeding.is_set():
            for k, name in enumerate(names):
                due = t0 + tick * period + k * period / len(names)
                delay = due - time.monotonic()
                if delay > 0 and self._stop_feeding.wait(delay):
                    return
                self.sent[name] += 1
                self.clients[name].write(make_text(name, self.sent[name], time.time()))
            tick += 1

    # ----- faults ------------------------------------------------------------------------
    def do(self, action: str) -> None:
        began = time.time()
        attack = self._do(action)
        record = FaultRecord(action, began, time.time())
        with self._done_lock:
            self.done.append(record)
            if attack is not None:
                self.attacks[record] = attack

    def victim(self) -> tuple[str, str]:
        """(room, member name) a stranger tries to take a seat in."""
        return f"soak{SEAT_VICTIM_PAIR:02d}", f"a{SEAT_VICTIM_PAIR:02d}"

    def _do(self, action: str):
        if action.startswith("bounds:"):
            _, name, index = action.split(":")
            room, victim = self.victim()
            relay = self.relays[int(index)]
            with contextlib.suppress(TimeoutError):  # attacked anyway; refused=False then
                wait_for(lambda: relay.get("/healthz")[0] == 200, timeout=60, interval=0.5)
            attack = run_attack(name, relay, room=room, victim=victim)
            self.timeline.note(
                f"attack {name} on relay {index}: refused={attack.refused} "
                f"peak_growth_kb={attack.growth_kb} ({attack.detail})"
            )
            return attack
        if action.startswith("kill_relay:"):
            relay = self.relays[int(action.split(":")[1])]
            relay.stop(signal.SIGKILL)
            self.timeline.note(f"SIGKILL relay :{relay.port}")
            time.sleep(3)
            relay.start()
            self.timeline.note(f"relay :{relay.port} restarted")
        elif action == "restart_redis":
            self.redis.stop()
            self.timeline.note("redis stopped (all its data is gone)")
            time.sleep(2)
            self.redis.start()
            self.timeline.note("redis started again, empty")
        elif action.startswith("cut_client:"):
            mode = action.split(":")[1]
            for p in self.proxies:
                p.stall() if mode == "stall" else p.cut()
            if mode == "stall":
                self._stalls.release()
            self.timeline.note(
                f"cut {self.cut_name}'s connection ({mode}) for {self.cfg.cut_for():g}s"
            )
            time.sleep(self.cfg.cut_for())
            for p in self.proxies:
                p.restore()
            self.timeline.note(f"{self.cut_name}'s connection restored")

    def _attack(self) -> None:
        for cycle in self.cfg.attacks():
            if not self._stalls.acquire(timeout=self.cfg.seconds + 300):
                return  # the stall never came: the fault count assertion reports it
            for action in cycle:
                self.do(action)

    def run(self) -> None:
        feeder = threading.Thread(target=self.feed, daemon=True, name="feeder")
        start = time.monotonic()
        self.timeline.note(f"sending {self.cfg.rate:g} msg/s per client for {self.cfg.seconds:g}s")
        # The attacks run beside the main faults (the stall only sleeps meanwhile).
        attacker = threading.Thread(target=self._attack, daemon=True, name="attacker")
        feeder.start()
        attacker.start()
        try:
            for offset, action in self.cfg.faults():
                delay = start + offset - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.do(action)
            left = start + self.cfg.seconds - time.monotonic()
            if left > 0:
                time.sleep(left)
        finally:
            attacker.join(timeout=180)
            self._stop_feeding.set()
            feeder.join(timeout=10)
        self.done.sort(key=lambda f: f.began)
        self.timeline.note(f"stopped sending: {sum(self.sent.values())} messages")

    def drain(self) -> None:
        """Wait until every receiver shows everything (or the drain deadline), then end input."""

        def complete() -> bool:
            return all(
                len(self.distinct_from(rcv, snd)) >= n
                for snd, n in self.sent.items()
                for rcv in [self.peer_of[snd]]
            )

        try:
            wait_for(complete, timeout=self.cfg.drain_seconds, interval=0.5, what="delivery")
            self.timeline.note("every message shown; closing stdin")
        except TimeoutError:
            self.timeline.note("drain deadline passed with messages missing")
        for c in self.clients.values():
            c.close_stdin()
        deadline = time.monotonic() + 60
        for c in self.clients.values():
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - reported as a bad exit below
                self.timeline.note(f"{c.name} still running 60s after its input ended")
                c.stop()

    def dump(self, folder: Path) -> None:
        """Every client's stdout (with read times) and stderr, for a post-mortem."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, c in self.clients.items():
            with open(folder / f"{name}.out", "w") as f:
                for at, line in list(c.lines):
                    f.write(f"{at:.3f} {line}\n")
            (folder / f"{name}.err").write_text(c.stderr())
        for i, r in enumerate(self.relays):
            (folder / f"relay{i}.log").write_text(r.log())

    def distinct_from(self, receiver: str, sender: str) -> set[int]:
        out = set()
        for e in self.clients[receiver].of("message"):
            item = parse_shown(str(e.get("text", "")), 0.0)
            if item is not None and item.sender == sender:
                out.add(item.seq)
        return out

    # ----- verdict -----------------------------------------------------------------------
    def report(self):
        streams = []
        unparsable = 0
        for sender, count in sorted(self.sent.items()):
            receiver = self.peer_of[sender]
            shown = []
            for at, e in self.clients[receiver].timed_events():
                if e.get("event") != "message":
                    continue
                item = parse_shown(str(e.get("text", "")), at)
                if item is None:
                    unparsable += 1
                else:
                    shown.append(item)
            streams.append(check_stream(sender, receiver, count, shown))
        return summarize(streams, unparsable)


def client_problems(soak: Soak) -> dict:
    """Exit codes, tracebacks and non-JSON output of every client."""
    problems = {}
    for name, c in soak.clients.items():
        err = c.stderr()
        issues = []
        if c.proc.returncode != 0:
            issues.append(f"exit {c.proc.returncode}")
        if "Traceback" in err:
            issues.append("traceback on stderr")
        if c.non_json_lines():
            issues.append(f"non-JSON stdout: {c.non_json_lines()[:3]}")
        if issues:
            problems[name] = {"issues": issues, "stderr_tail": err[-1500:]}
    return problems


def _timeout() -> int:
    # Sending time plus set-up (~30 s), drain (<= 90 s), exits (<= 60 s) and some slack.
    return int(SoakConfig.from_env().seconds) + 400


@pytest.mark.timeout(_timeout())
def test_soak_zero_loss_zero_duplicates_under_faults(tmp_path):
    cfg = SoakConfig.from_env()
    soak = Soak(tmp_path, cfg)
    began = time.monotonic()
    try:
        soak.start()
        soak.run()
        soak.drain()
        report = soak.report()
        problems = client_problems(soak)
        relay_tracebacks = sum(r.log().count("Traceback") for r in soak.relays)
        effects = fault_effects(soak, report)
        soak.dump(report_dir() / "clients")
        errors = {
            name: [e.get("message") for e in c.of("error")][:5]
            for name, c in soak.clients.items()
            if c.of("error")
        }
    finally:
        soak.cleanup()
    figures = {
        "load_average": os.getloadavg(),
        "config": {
            "pairs": PAIRS,
            "clients": 2 * PAIRS,
            "send_seconds": cfg.seconds,
            "rate_per_client": cfg.rate,
            "cut_seconds": cfg.cut_seconds,
            "faults": [action for _, action in cfg.faults()],
            "attacks": cfg.attacks(),
        },
        "wall_seconds": round(time.monotonic() - began, 1),
        "timeline": [[round(t, 2), text] for t, text in soak.timeline.notes],
        **report.as_dict(),
        "max_delay_other_pairs_s": max(
            (
                s["max_delay"]
                for s in report.streams
                if soak.cut_name not in (s["sender"], s["receiver"])
            ),
            default=0.0,
        ),
        "client_errors": errors,
        "client_problems": problems,
        "relay_tracebacks": relay_tracebacks,
        "fault_effects": effects,
        "bounds_attacks": [
            {
                "action": f.action,
                "refused": a.refused,
                "peak_growth_kb": a.growth_kb,
                "bound_kb": ATTACK_RSS_BOUND_KB,
                "detail": a.detail,
            }
            for f, a in sorted(soak.attacks.items(), key=lambda item: item[0].began)
        ],  # fmt: skip
    }
    path = report_dir() / "soak-report.json"
    path.write_text(json.dumps(figures, indent=2))
    print(
        f"\nSOAK FIGURES: {report.summary()} "
        f"max_delay_other_pairs={figures['max_delay_other_pairs_s']}s "
        f"wall={figures['wall_seconds']}s\nwritten to {path}"
    )
    assert_zero_loss(report, figures, problems, relay_tracebacks)
    # Every fault really happened and was felt (else the zero-loss verdict proves nothing).
    assert len(soak.done) == len(cfg.faults()) + sum(map(len, cfg.attacks())), soak.done
    missing = [e for e in effects if not e["seen"]]
    assert not missing, missing
