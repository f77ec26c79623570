"""`make demo` runs scripts/demo.py: check it shows a working, end-to-end encrypted chat."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"


def test_demo_shows_equal_safety_numbers_delivery_and_only_ciphertext_at_the_relay():
    proc = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=180, check=False
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    numbers = re.findall(r"^\s+(alice|bob)\s+sees: ((?:\d{5} ){11}\d{5})$", out, re.M)
    assert [who for who, _ in numbers] == ["alice", "bob"], out
    assert numbers[0][1] == numbers[1][1], out
    assert "-> EQUAL" in out
    # Every line of the scripted conversation was delivered to the other side.
    delivered = re.findall(r"^\s+(alice|bob) -> (alice|bob)\s+(.+?)\s+\[ok\]$", out, re.M)
    assert len(delivered) == 4 and all(a != b for a, b, _ in delivered), out
    assert "exited with status 0" in out and "WRONG" not in out
    # The tap really saw the traffic (8 envelopes: 4 texts, 4 receipts), and none of it in clear.
    assert len(re.findall(r"^\s+received_message\s+\d+ B\s+\{\"v\":1,", out, re.M)) >= 8, out
    assert "conversation lines found in forwarded payloads: 0 of 4" in out
    for _, _, text in delivered:
        relay_part = out.split("== What the relay forwarded", 1)[1]
        assert text not in relay_part
    assert out.rstrip().endswith("DEMO OK")
