"""The stored bench's load: tests/support/relay_stored_load.py in several processes at once.

The pairs are split over `--load-procs` processes, as bench/loadgen.py does for the live
load, so that the generator's own CPU (one core per process at most) does not set the drain
rate on a loaded machine (issue 15: at load 20-30 one process read about 15 entries/s per
client, docs/operations.md says what that led to). Every process
prepares its pairs (B joins once and leaves, A connects) and says so; each phase (A stores,
then every B reconnects and drains) begins in all of them at one shared start time
(`time.time()` a moment ahead, on their stdin). The relays' + Redis CPU is read here around
each phase: from its shared start to the last process's report. The parts merge
(tests/support/stored_stats.py) into the figures one process carrying every pair would give.

    figures = run_stored_load(relays[0].url, relays[1].url, pids, args)
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import START_MARGIN_SECONDS, start_procs, stop, tail  # noqa: E402

from tests.support.load_stats import split_pairs  # noqa: E402
from tests.support.relay_stored_load import cpu_seconds  # noqa: E402
from tests.support.stored_stats import merge, summarize  # noqa: E402

# Seconds one phase may take in all the processes together before the run is given up:
# 50 x 1,000 entries drained by a loaded generator, plus the acks.
PHASE_TIMEOUT = 900.0


def stored_cmds(url_a: str, url_b: str, args) -> list:
    """One relay_stored_load command per load process: a slice of the pairs."""
    tag = secrets.token_hex(3)
    return [
        [
            sys.executable,
            "-m",
            "tests.support.relay_stored_load",
            *("--url-a", url_a, "--url-b", url_b, "--tag", tag),
            *("--first-pair", str(first), "--pairs", str(count)),
            *("--messages", str(args.stored_messages), "--size", str(args.size)),
            *("--window", str(args.window)),
        ]
        for first, count in split_pairs(args.pairs, args.load_procs)
    ]


def read_phase(procs: list, errs: list, phase: str, deadline: float) -> list[dict]:
    """Each process's next line, which must report `phase` (else the run failed)."""
    out = []
    for proc, err in zip(procs, errs, strict=True):
        line = readline_before(proc, deadline)
        try:
            report = json.loads(line)
        except ValueError:
            report = {}
        if report.get("phase") != phase:
            raise RuntimeError(f"stored load did not reach {phase!r}:\n{tail(proc, err)}")
        out.append(report)
    return out


def readline_before(proc: subprocess.Popen, deadline: float) -> str:
    """proc's next stdout line; kills it (so the read ends) if `deadline` passes first."""
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), stop, args=([proc],))
    timer.start()
    try:
        return proc.stdout.readline()
    finally:
        timer.cancel()


def start_phase(procs: list) -> float:
    """Write one shared start time to every process; returns it (`time.time()`)."""
    start_at = time.time() + START_MARGIN_SECONDS
    for proc in procs:
        proc.stdin.write(f"{start_at:.6f}\n")
        proc.stdin.flush()
    time.sleep(max(0.0, start_at - time.time()))
    return start_at


def run_stored_load(url_a: str, url_b: str, pids: list[int], args) -> dict:
    """Run the stored load over the processes; its figures (stored_stats.summarize), with
    the CPU of `pids` (relays + redis-server) over each phase."""
    cmds = stored_cmds(url_a, url_b, args)
    with contextlib.ExitStack() as stack:
        procs, errs = start_procs(stack, cmds)
        read_phase(procs, errs, "ready", time.monotonic() + PHASE_TIMEOUT)
        store_at = start_phase(procs)
        cpu0 = cpu_seconds(pids)
        read_phase(procs, errs, "stored", time.monotonic() + PHASE_TIMEOUT)
        cpu_store = cpu_seconds(pids) - cpu0
        drain_at = start_phase(procs)
        cpu1 = cpu_seconds(pids)
        parts = read_phase(procs, errs, "drained", time.monotonic() + PHASE_TIMEOUT)
        cpu_drain = cpu_seconds(pids) - cpu1
        for proc, err in zip(procs, errs, strict=True):
            if proc.wait(timeout=60) != 0:
                raise RuntimeError(f"stored load failed:\n{tail(proc, err)}")
    figures = summarize(merge(parts), store_at, drain_at, cpu_store, cpu_drain)
    figures["load_procs"] = len(cmds)
    return figures
