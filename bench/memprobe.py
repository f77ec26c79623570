"""parley-relay under tracemalloc: where the memory of idle connections goes.

    python bench/memprobe.py OUT_DIR -- <parley-relay arguments>

Runs the relay exactly as `python -m parley_relay` does, with tracemalloc on (10 frames).
SIGUSR1 writes OUT_DIR/snap-<k>.txt: Python heap by allocation site and live objects by type,
each as the difference from the previous SIGUSR1 (the first one is the baseline), plus the
greenlet count and the bytes of greenlet stacks saved on the heap. Run it by hand with
bench/idle_client.py connecting N idle websockets between two SIGUSR1s: that gave the
breakdown in docs/operations.md ("Memory per connection").
"""

from gevent import monkey

monkey.patch_all()

import collections  # noqa: E402
import gc  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import greenlet  # noqa: E402

TRACE_FRAMES = 10
TOP_SITES = 40


def _types() -> collections.Counter:
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


def _greenlets() -> tuple[int, int]:
    live = [o for o in gc.get_objects() if isinstance(o, greenlet.greenlet)]
    return len(live), sum(sys.getsizeof(g) for g in live)


class Probe:
    def __init__(self, out: Path):
        self.out = out
        self.count = 0
        self.last = None
        self.last_types = None

    def snap(self) -> None:
        gc.collect()
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        types = _types()
        n_greenlets, g_bytes = _greenlets()
        lines = [
            f"traced {tracemalloc.get_traced_memory()[0]} B; greenlets {n_greenlets} "
            f"(getsizeof total {g_bytes} B)"
        ]
        if self.last is not None:
            for key in ("filename", "traceback"):
                stats = snap.compare_to(self.last, key)
                total = sum(s.size_diff for s in stats)
                lines.append(f"\n== by {key}: total diff {total} B ==")
                for stat in stats[:TOP_SITES]:
                    frames = list(stat.traceback)[::-1]  # the allocating frame first
                    lines.append(f"{stat.size_diff:>12} B {stat.count_diff:>8}  {frames[0]}")
                    if key == "traceback":
                        lines.extend(f"        {frame}" for frame in frames[1:8])
            lines.append("\n== live objects by type (diff) ==")
            diff = types.copy()
            diff.subtract(self.last_types)
            lines.extend(f"{n:>9}  {name}" for name, n in diff.most_common(40))
        self.out.joinpath(f"snap-{self.count}.txt").write_text("\n".join(lines) + "\n")
        self.count += 1
        self.last, self.last_types = snap, types


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    argv = sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:]
    tracemalloc.start(TRACE_FRAMES)
    probe = Probe(out)
    gevent.signal_handler(signal.SIGUSR1, lambda: gevent.spawn(probe.snap))
    from parley_relay.__main__ import main as relay_main

    return relay_main(argv)


if __name__ == "__main__":
    sys.exit(main())
