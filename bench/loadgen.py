"""The relay benches' load: tests/support/relay_load.py in several processes at once.

One gevent process cannot offer 1,000 msg/s on a 2-core machine, so the pairs are split
over `--load-procs` processes (pair indices, rooms and replicas as one process would give
them), each at its share of the offered rate. Every process connects its pairs and says so;
then all get one start time (`time.time()` a moment ahead) on stdin and begin sending
together, and their raw results merge (tests/support/load_stats.py) into the figures one
process would report: summed counts, p50/p99 over the pooled samples, the longest spans.

    result = run_generators(generator_cmds(relays, args, "tag", rate=1000.0, seconds=5.0))
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support.load_stats import merge, split_pairs, summarize  # noqa: E402

# Load-generator processes (`--load-procs`): one gevent process cannot offer 1,000 msg/s on
# a 2-core machine (issue 14: its paced p50 of 4,220 ms was its own backlog); two share the
# pairs, and more would only take CPU from the relays being measured.
LOAD_PROCS = 2
# Once every generator has connected its pairs, the shared start time lies this far ahead:
# time to write it to each generator's stdin (generous on a loaded machine).
START_MARGIN_SECONDS = 0.5
# In-flight messages per sender in the paced runs: the pace, not the window, sets the rate.
PACED_WINDOW = 50


def generator_cmds(relays: list, args, tag: str, rate: float, seconds: float) -> list:
    """One relay_load command per load process (`--load-procs`): a slice of the pairs, at
    its share of `rate` msg/s offered over `seconds` (rate 0: the unpaced rounds)."""
    messages, window = args.messages, args.window
    if rate:
        messages, window = max(1, int(rate * seconds / (2 * args.pairs))), PACED_WINDOW
    return [
        [
            sys.executable,
            "-m",
            "tests.support.relay_load",
            *("--urls", ",".join(r.url for r in relays), "--tag", tag),
            *("--first-pair", str(first), "--pairs", str(count), "--all-pairs", str(args.pairs)),
            *("--messages", str(messages)),
            *("--size", str(args.size), "--window", str(window)),
            *("--rate", str(rate * count / args.pairs), "--wait-for-go", "--samples"),
        ]
        for first, count in split_pairs(args.pairs, args.load_procs)
    ]


def run_generators(cmds: list) -> dict:
    """Start the load processes, let them all begin sending at one shared moment once each
    has connected its pairs, and merge their results as one process would report them."""
    with contextlib.ExitStack() as stack:
        procs, errs = start_procs(stack, cmds)
        for proc, err in zip(procs, errs, strict=True):
            if "connected" not in proc.stdout.readline():
                raise RuntimeError(f"load generator did not connect:\n{tail(proc, err)}")
        start_at = f"{time.time() + START_MARGIN_SECONDS:.6f}\n"
        for proc in procs:
            proc.stdin.write(start_at)
            proc.stdin.flush()
        outs = [proc.communicate(timeout=900)[0] for proc in procs]
        for proc, err in zip(procs, errs, strict=True):
            if proc.returncode != 0:
                raise RuntimeError(f"load generator failed:\n{tail(proc, err)}")
    return summarize(merge([json.loads(out.strip().splitlines()[-1])["raw"] for out in outs]))


def start_procs(stack: contextlib.ExitStack, cmds: list) -> tuple[list, list]:
    """Start one load process per command (stdin and stdout piped, stderr to a temporary
    file); `stack` kills and reaps them (also on failure) before it closes the files."""
    errs = [stack.enter_context(tempfile.TemporaryFile(mode="w+")) for _ in cmds]  # noqa: SIM115
    procs: list[subprocess.Popen] = []
    stack.callback(stop, procs)
    for cmd, err in zip(cmds, errs, strict=True):
        procs.append(
            subprocess.Popen(
                cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=err, text=True,
            )
        )  # fmt: skip
    return procs, errs


def stop(procs: list[subprocess.Popen]) -> None:
    """Kill the load processes still running (a failed or timed-out run) and reap them."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def tail(proc: subprocess.Popen, err) -> str:
    """The end of a load process's stderr (it is stopped first, so the file is complete)."""
    stop([proc])
    err.seek(0)
    return err.read()[-3000:]
