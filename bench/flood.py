"""Latency of a good pair beside a flooder, on one relay replica (the reliability issue's
acceptance bound: p99 one-way latency under 100 ms while the flooder is rate limited).

Starts a redis-server and one relay on free ports, runs the scenario of
tests/integration/test_flood_relay.py and prints its figures. Exit status 1 when the p99 is
over the bound: a timing figure belongs here, on a quiet machine, not in the test suite.

    python bench/flood.py [--samples 300]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.test_flood_relay import run_flood  # noqa: E402
from tests.support.servers import RedisServer, RelayProcess  # noqa: E402

P99_LIMIT_MS = 100.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=300)
    args = p.parse_args(argv)
    redis = RedisServer().start()
    relay = RelayProcess(redis_url=redis.url)
    try:
        relay.start()
        figures = run_flood(relay.url, samples=args.samples)
    finally:
        relay.cleanup()
        redis.cleanup()
    print(json.dumps(figures))
    ok = figures["order_ok"] and figures["p99_ms"] < P99_LIMIT_MS
    print(f"p99_ms={figures['p99_ms']} limit_ms={P99_LIMIT_MS:g} {'OK' if ok else 'OVER'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
