"""`make demo` runs scripts/demo.py: check it shows a working, end-to-end encrypted chat."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.leaks import assert_no_leaks

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"


def run_demo(tap: Path, timeout: float = 180) -> tuple[int, str, str]:
    """Run the demo in its own process group: on a timeout or failure the relay and both
    clients it started are killed with it, never left behind."""
    proc = subprocess.Popen(
        [sys.executable, str(DEMO), "--keep-tap", str(tap)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the demo's children, if any are left
        proc.wait(timeout=10)
    return proc.returncode, out, err


def test_demo_shows_equal_safety_numbers_delivery_and_only_ciphertext_at_the_relay(tmp_path):
    tap = tmp_path / "tap.jsonl"
    status, out, err = run_demo(tap)
    assert status == 0, out + err
    numbers = re.findall(r"^\s+(alice|bob)\s+sees: ((?:\d{5} ){11}\d{5})$", out, re.M)
    assert [who for who, _ in numbers] == ["alice", "bob"], out
    assert numbers[0][1] == numbers[1][1], out
    assert "-> EQUAL" in out
    # Every line of the scripted conversation was delivered to the other side.
    delivered = re.findall(r"^\s+(alice|bob) -> (alice|bob)\s+(.+?)\s+\[ok\]$", out, re.M)
    assert len(delivered) == 4 and all(a != b for a, b, _ in delivered), out
    assert "exited with status 0" in out and "WRONG" not in out
    assert "conversation lines found in forwarded payloads: 0 of 4" in out
    assert out.rstrip().endswith("DEMO OK")
    # The full tap (not the printout, whose payloads are cut short): it really saw the
    # traffic (8 envelopes: 4 texts, 4 receipts), and no line of it in any spelling.
    records = [json.loads(line) for line in tap.read_text().splitlines() if line.strip()]
    envelopes = [r["payload"] for r in records if r["event"] == "received_message"]
    assert len(envelopes) >= 8 and all(isinstance(e, dict) and "v" in e for e in envelopes)
    assert_no_leaks(tap.read_text(), {f"line {i}": t for i, (_, _, t) in enumerate(delivered)})
