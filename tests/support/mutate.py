"""`make mutate`: mutation testing (cosmic-ray) of the code security decisions rest on.

Each target is one module and the unit tests that must catch a change to it. cosmic-ray
rewrites the module in place, one mutant at a time, and runs the tests: a mutant that the
tests do not fail "survived". To keep the working tree (and anything running from it) safe,
everything happens in a throw-away copy of the tracked files, imported ahead of the
editable installs via PYTHONPATH.

    python -m tests.support.mutate                # every decision module (about an hour)
    python -m tests.support.mutate --ci           # the bounded subset CI runs (~10 minutes)
    python -m tests.support.mutate --full         # every operator, every target
    python -m tests.support.mutate kdf core       # some targets only
    python -m tests.support.mutate --recheck kdf  # only the last run's survivors, again

Prints the score per target and every survivor's diff; writes .mutation/report.json.
docs/testing.md records the scores and why each remaining survivor is equivalent.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / ".mutation"
UNIT = "tests/unit"
CRYPTO = "shared/crypto/parley_crypto"
# hypothesis' 2-second conversation generator: a broad net left out of the per-mutant command
# (it would double the time per mutant); the targeted tests have to kill every mutant alone
RANDOM_CONVERSATIONS = "test_crypto_ratchet.py::test_random_conversations_deliver_everything_once"

# name -> (module, test files). Only modules that stay through the protocol v2 rewrite and
# the relay's decision code; the tests are the ones that exercise each module directly.
TARGETS: dict[str, tuple[str, list[str]]] = {
    "kdf": (
        "shared/crypto/parley_crypto/kdf.py",
        [f"{UNIT}/crypto/test_crypto_kats.py", f"{UNIT}/test_boundaries.py"],
    ),
    "aes_cfb": (
        "shared/crypto/parley_crypto/aes_cfb.py",
        [f"{UNIT}/crypto/test_crypto_kats.py", f"{UNIT}/test_boundaries.py"],
    ),
    "dh": (
        "shared/crypto/parley_crypto/dh.py",
        [f"{UNIT}/crypto/test_crypto_dh.py", f"{UNIT}/test_boundaries.py"],
    ),
    "groups": (
        "shared/crypto/parley_crypto/groups.py",
        [f"{UNIT}/crypto/test_crypto_groups.py", f"{UNIT}/crypto/test_crypto_dh.py"],
    ),
    "core": (
        "services/relay/parley_relay/core.py",
        [
            f"{UNIT}/relay/test_relay_core.py",
            f"{UNIT}/relay/test_relay_store.py",
            f"{UNIT}/test_boundaries.py",
        ],
    ),
    # the memory store's half of the contract suite plus the core tests that drive it (the
    # Redis half tests redis_store and would start a redis-server per mutant)
    "store": (
        "services/relay/parley_relay/store.py",
        [
            f"{UNIT}/relay/test_relay_store.py",
            f"{UNIT}/relay/test_relay_core.py",
            "-k 'memory or relay_core'",
        ],
    ),
    # protocol v2 (the crypto package's own fast unit tests; the 10,000-message burst is left
    # out: it proves capacity, not a decision, and would cost seconds per mutant)
    "handshake": (
        f"{CRYPTO}/handshake.py",
        [
            f"{UNIT}/crypto/test_crypto_handshake.py",
            f"{UNIT}/crypto/test_crypto_handshake_rules.py",
            f"{UNIT}/crypto/test_crypto_schedule.py",
        ],
    ),
    "ratchet": (
        f"{CRYPTO}/ratchet.py",
        [
            f"{UNIT}/crypto/test_crypto_schedule.py",  # known answers first: they fail fastest
            f"{UNIT}/crypto/test_crypto_ratchet_rules.py",
            f"{UNIT}/crypto/test_crypto_ratchet.py",
            f"--deselect={UNIT}/crypto/test_crypto_ratchet.py::test_ten_thousand_message_burst",
            f"--deselect={UNIT}/crypto/{RANDOM_CONVERSATIONS}",
        ],
    ),
    "safety": (f"{CRYPTO}/safety.py", [f"{UNIT}/crypto/test_crypto_safety.py"]),
    "session": (
        f"{CRYPTO}/session.py",
        [
            f"{UNIT}/crypto/test_crypto_session_rules.py",
            f"{UNIT}/crypto/test_crypto_session.py",
            f"{UNIT}/crypto/test_crypto_handshake.py",
            f"{UNIT}/crypto/test_crypto_prekeys.py",  # the initial message rides on envelopes
        ],
    ),
    # asynchronous first contact (X3DH's shape): the bundle's checks, the initial message's,
    # the responder's store of prekeys and used inits (the client's offline tests drive the
    # store through the sans-IO client core, no relay)
    "prekeys": (
        f"{CRYPTO}/prekeys.py",
        [
            f"{UNIT}/crypto/test_crypto_prekeys.py",
            f"{UNIT}/crypto/test_crypto_prekey_bounds.py",
            f"{UNIT}/crypto/test_crypto_session_rules.py",
        ],
    ),
    "prekey_bundle": (
        f"{CRYPTO}/prekey_bundle.py",
        [
            f"{UNIT}/crypto/test_crypto_prekeys.py",
            f"{UNIT}/crypto/test_crypto_prekey_bounds.py",
        ],
    ),
    "prekey_store": (
        f"{CRYPTO}/prekey_store.py",
        [
            f"{UNIT}/crypto/test_crypto_prekey_store.py",
            f"{UNIT}/crypto/test_crypto_prekeys.py",
            f"{UNIT}/crypto/test_crypto_prekey_bounds.py",
            f"{UNIT}/client/test_client_offline.py",
        ],
    ),
    "session_state": (
        f"{CRYPTO}/session_state.py",
        [
            f"{UNIT}/crypto/test_crypto_session_state.py",
            f"{UNIT}/crypto/test_crypto_session_rules.py",
            f"{UNIT}/crypto/test_crypto_session.py",
            f"{UNIT}/crypto/test_crypto_ratchet.py",
            f"--deselect={UNIT}/crypto/test_crypto_ratchet.py::test_ten_thousand_message_burst",
        ],
    ),
    "padding": (
        f"{CRYPTO}/padding.py",
        [
            f"{UNIT}/crypto/test_crypto_session.py",
            f"{UNIT}/crypto/test_crypto_ratchet.py",
            f"--deselect={UNIT}/crypto/test_crypto_ratchet.py::test_ten_thousand_message_burst",
        ],
    ),
    "elgamal": (
        f"{CRYPTO}/elgamal.py",
        [f"{UNIT}/crypto/test_crypto_elgamal.py", f"{UNIT}/crypto/test_crypto_elgamal_bounds.py"],
    ),
    # the verification equation itself (elgamal.py does the range and subgroup checks)
    "elgamal_raw": (
        f"{CRYPTO}/_primitives/elgamal.py",
        [f"{UNIT}/crypto/test_crypto_elgamal.py", f"{UNIT}/crypto/test_crypto_elgamal_bounds.py"],
    ),
    # the client's contact and outbox decisions
    "contacts": (
        "services/client/parley_client/contacts.py",
        [
            f"{UNIT}/client/test_client_contacts.py",
            f"{UNIT}/client/test_client_guard.py",
            f"{UNIT}/client/test_client_core.py",
        ],
    ),
    "guard": (
        "services/client/parley_client/guard.py",
        [
            f"{UNIT}/client/test_client_contacts.py",
            f"{UNIT}/client/test_client_guard.py",
            f"{UNIT}/client/test_client_core.py",
        ],
    ),
    "sessions": (
        "services/client/parley_client/sessions.py",
        [
            f"{UNIT}/client/test_client_sessions.py",
            f"{UNIT}/client/test_client_binding.py",
            f"{UNIT}/client/test_client_core.py",
        ],
    ),
    "redis_store": (
        "services/relay/parley_relay/redis_store.py",
        [f"{UNIT}/relay/test_relay_store.py"],
    ),
}
# `make mutate`: every module a security decision rests on (an hour or so on a loaded 2-core
# machine); `--full` adds the group loader and the Redis store and every operator.
DEFAULT = [n for n in TARGETS if n not in ("groups", "redis_store")]
# `--ci`: the bounded subset a CI job can afford (about ten minutes here): the safety number,
# the handshake's checks, the relay's seat rules and the client's session choice.
CI = ["safety", "handshake", "store", "sessions"]

# The bounded run drops the binary-operator swaps that rarely say anything new: each `+`
# otherwise yields eleven mutants (Add_Pow, Add_RShift, ...) where Add_Sub and Add_Mul
# already show whether the tests look at the result at all.
QUICK_EXCLUDE = [
    r"core/ReplaceBinaryOperator_\w+_(FloorDiv|Mod|Pow|RShift|LShift|BitOr|BitAnd|BitXor)",
]
PER_MUTANT_TIMEOUT_S = 60.0


def make_copy() -> Path:
    """A copy of the tracked files, so mutants never touch the working tree."""
    tree = Path(tempfile.mkdtemp(prefix="parley-mutate-"))
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src, dst = REPO / name.decode(), tree / name.decode()
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return tree


def config(module: str, tests: list[str], quick: bool) -> str:
    paths = "shared/crypto:services/relay:services/client:."
    # hypothesis' pytest plugin only adds options and reporting; leaving it out saves half a
    # second of start-up per mutant (hypothesis tests still run)
    # No bytecode caches: a cached .pyc of the unmutated module is trusted when the mutant has
    # the same size and mtime second, which would let a mutant "survive" unseen.
    command = (
        f"env PYTHONPATH={paths} PYTHONDONTWRITEBYTECODE=1 "
        f"{sys.executable} -m pytest -x -q -p no:cacheprovider "
        "-p no:hypothesispytest "
    )
    lines = [
        "[cosmic-ray]",
        f'module-path = "{module}"',
        f"timeout = {PER_MUTANT_TIMEOUT_S}",
        "excluded-modules = []",
        f'test-command = "{command}{" ".join(tests)}"',
        "",
        "[cosmic-ray.distributor]",
        'name = "local"',
        "",
        "[cosmic-ray.filters.operators-filter]",
        f"exclude-operators = {json.dumps(QUICK_EXCLUDE if quick else [])}",
    ]
    return "\n".join(lines) + "\n"


def results(session: Path) -> dict:
    db = sqlite3.connect(session)
    rows = db.execute(
        "SELECT s.operator_name, s.start_pos_row, r.test_outcome, r.diff, r.worker_outcome "
        "FROM mutation_specs s JOIN work_results r ON s.job_id = r.job_id"
    ).fetchall()
    counts = {"killed": 0, "survived": 0, "incompetent": 0, "other": 0}
    survivors = []
    for operator, line, outcome, diff, worker in rows:
        outcome = (outcome or str(worker)).lower()  # SQLAlchemy stores the enum's name
        key = outcome if outcome in counts else "other"
        counts[key] += 1
        if outcome == "survived":
            survivors.append({"operator": operator, "line": line, "diff": diff})
    judged = counts["killed"] + counts["survived"]
    score = round(100 * counts["killed"] / judged, 1) if judged else None
    return {"mutants": len(rows), **counts, "score_pct": score, "survivors": survivors}


def only_previous_survivors(session: Path, previous: dict) -> int:
    """Mark every mutant that is not at a previous survivor's (operator, line) as judged
    before, so `exec` runs only those; returns how many will run. Sound because tests are
    only ever added: a mutant killed before stays killed."""
    again = {(s["operator"], s["line"]) for s in previous["survivors"]}
    db = sqlite3.connect(session)
    pending = db.execute(
        "SELECT s.job_id, s.operator_name, s.start_pos_row FROM mutation_specs s "
        "WHERE s.job_id NOT IN (SELECT job_id FROM work_results)"
    ).fetchall()
    skip = [(job,) for job, op, line in pending if (op, line) not in again]
    db.executemany(
        "INSERT INTO work_results (worker_outcome, output, job_id) "
        "VALUES ('SKIPPED', 'judged in the previous run', ?)",
        skip,
    )
    db.commit()
    return len(pending) - len(skip)


def rechecked(report: dict, previous: dict) -> dict:
    """The previous run's verdicts with its survivors re-judged by this run."""
    judged = previous["killed"] + previous["survived"]
    survived = report["survived"]
    score = round(100 * (judged - survived) / judged, 1) if judged else None
    return {
        **report,
        "killed": judged - survived,
        "incompetent": previous["incompetent"],
        "score_pct": score,
        "rechecked": previous["survived"],
    }


def run_target(tree: Path, name: str, quick: bool, recheck: bool = False) -> dict:
    module, tests = TARGETS[name]
    cfg = tree / f"mutate-{name}.toml"
    cfg.write_text(config(module, tests, quick))
    session = tree / f"mutate-{name}.sqlite"
    cr = [sys.executable, "-m", "cosmic_ray.cli"]
    started = time.monotonic()
    subprocess.run([*cr, "init", cfg.name, session.name], cwd=tree, check=True)
    filt = Path(sys.executable).with_name("cr-filter-operators")
    subprocess.run([str(filt), session.name, cfg.name], cwd=tree, check=True)
    previous_file = OUT / f"{name}.json"
    previous = json.loads(previous_file.read_text()) if recheck and previous_file.exists() else None
    if previous is not None:
        print(f"mutate {name}: re-running {only_previous_survivors(session, previous)} mutants")
    subprocess.run([*cr, "baseline", cfg.name], cwd=tree, check=True)
    subprocess.run([*cr, "exec", cfg.name, session.name], cwd=tree, check=True)
    report = results(session)
    if previous is not None:
        report = rechecked(report, previous)
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="mutation testing of Parley's decision code")
    p.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)}")
    p.add_argument("--full", action="store_true", help="every target and every operator")
    p.add_argument("--ci", action="store_true", help=f"the bounded subset: {', '.join(CI)}")
    p.add_argument(
        "--recheck",
        action="store_true",
        help="re-run only the survivors of the last run (.mutation/<target>.json) "
        "after adding tests",
    )
    args = p.parse_args(argv)
    names = args.targets or (list(TARGETS) if args.full else CI if args.ci else DEFAULT)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(f"mutate: unknown target(s) {unknown}; choose from {list(TARGETS)}")
        return 2
    tree = make_copy()
    report = {}
    try:
        for name in names:
            report[name] = run_target(tree, name, not args.full, args.recheck)
            r = report[name]
            judged = r["killed"] + r["survived"]
            print(
                f"MUTATE {name}: {r['killed']}/{judged} killed ({r['score_pct']}%), "
                f"{r['mutants']} mutants, {r['seconds']} s",
                flush=True,
            )
            for s in r["survivors"]:
                print(f"  survived {s['operator']} line {s['line']}:\n{s['diff']}")
            OUT.mkdir(exist_ok=True)
            (OUT / f"{name}.json").write_text(json.dumps(r, indent=2))
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
