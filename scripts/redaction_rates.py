"""How often the redaction misses a random key, and how often it takes a path for one.

Misses: N random keys of each alphabet (seeded), each given alone to ``redact_argv`` the
way a bare command-line argument is; a key is missed when any 12 characters of it survive.
False alarms: every run of 32+ key characters in the file paths under ROOTS (this
machine's own files: real paths, hub-cache names, build ids), counted when
``looks_like_key`` takes it for a key.

    python scripts/redaction_rates.py --keys 100000 --roots /usr /opt /root
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from distillmeter.privacy.redact import (  # noqa: E402
    _ALNUM_RUN,
    _TOKEN_RUN,
    LONG_RUN,
    _short_key,
    looks_like_key,
    redact_argv,
)
from key_alphabets import KEY_MAKERS  # noqa: E402  (the tests' own key generators)


def survives(key: str, text: str, window: int = 12) -> bool:
    return any(key[i:i + window] in text for i in range(len(key) - window + 1))


def misses(n: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    for name, make in KEY_MAKERS.items():
        missed = []
        for _ in range(n):
            key = make(rng)
            if survives(key, " ".join(redact_argv([key]))):
                missed.append(key)
        out[name] = missed
    return out


def false_alarms(roots: list[str], limit: int) -> tuple[int, list[str], int, list[str]]:
    """Runs of LONG_RUN+ key characters in paths taken for keys, and alphanumeric runs of
    20 to LONG_RUN - 1 characters taken for short tokens."""
    runs, short_runs = 0, 0
    flagged: list[str] = []
    short_flagged: list[str] = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                for run in _TOKEN_RUN.findall(path):
                    if len(run.rstrip("=")) < LONG_RUN:
                        continue
                    runs += 1
                    if looks_like_key(run):
                        flagged.append(run)
                for run in _ALNUM_RUN.findall(path):
                    short_runs += 1
                    if _short_key(run):
                        short_flagged.append(run)
            if runs >= limit:
                return runs, flagged, short_runs, short_flagged
    return runs, flagged, short_runs, short_flagged


def short_misses(n: int, seed: int, length: int = 28) -> int:
    """Random alphanumeric tokens of ``length`` (both cases and a digit) that are kept."""
    rng = random.Random(seed)
    alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    missed = 0
    for _ in range(n):
        tok = "".join(rng.choice(alnum) for _ in range(length))
        if survives(tok, " ".join(redact_argv([f"(got '{tok}')"]))):
            missed += 1
    return missed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=100_000, help="random keys per alphabet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--roots", nargs="*", default=["/usr", "/opt", "/etc", "/var"])
    ap.add_argument("--limit", type=int, default=1_000_000, help="path runs to look at")
    args = ap.parse_args()
    for name, missed in misses(args.keys, args.seed).items():
        print(f"{name:10s} missed {len(missed)} of {args.keys:,}"
              + (f"  e.g. {json.dumps(missed[:3])}" if missed else ""))
    print(f"28-alnum   missed {short_misses(args.keys, args.seed)} of {args.keys:,}")
    runs, flagged, short_runs, short_flagged = false_alarms(args.roots, args.limit)
    print(f"paths      {len(flagged)} of {runs:,} runs of {LONG_RUN}+ characters taken for keys"
          + (f"  e.g. {json.dumps(flagged[:5])}" if flagged else ""))
    print(f"paths      {len(short_flagged)} of {short_runs:,} alphanumeric runs of 20-"
          f"{LONG_RUN - 1} characters taken for tokens"
          + (f"  e.g. {json.dumps(short_flagged[:5])}" if short_flagged else ""))


if __name__ == "__main__":
    main()
