"""The fuzz campaign: every target in fuzz_targets.py for --cases cases (default 100,000), printing per target the
cases per second and how many cases ended in each outcome. Exit 0 when no case crashed and no forgery was accepted,
1 otherwise (the failing case, shrunk by hypothesis, is printed).

    .venv/bin/python bench/fuzz/run.py                      # >= 100,000 cases a target
    .venv/bin/python bench/fuzz/run.py --cases 2000 --target phy_payload
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_targets import close_targets, run_target, targets  # noqa: E402

#: Outcome labels shown per target; the rest are summed as "other".
SHOWN_OUTCOMES = 12


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases per target (default 100000)")
    parser.add_argument("--target", action="append", help="run only this target (repeatable)")
    args = parser.parse_args(argv)
    chosen = targets()
    try:
        names = {t.name for t in chosen}
        unknown = set(args.target or ()) - names
        if unknown:
            parser.error(f"unknown target(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")
        failed = False
        for target in chosen:
            if args.target and target.name not in args.target:
                continue
            started = time.perf_counter()
            try:
                outcomes = run_target(target, args.cases)
            except Exception:  # a crash or an accepted forgery: report it and go on with the next target
                failed = True
                print(f"{target.name}: FAILED", flush=True)
                traceback.print_exc()
                continue
            elapsed = time.perf_counter() - started
            total = sum(outcomes.values())
            print(f"{target.name}: {total} cases in {elapsed:.1f} s = {total / elapsed:,.0f} cases/s, "
                  f"0 crashes, 0 forgeries accepted, {len(outcomes)} outcomes", flush=True)
            common = outcomes.most_common(SHOWN_OUTCOMES)
            for outcome, count in common:
                print(f"    {count:>8}  {outcome}")
            rest = total - sum(count for _, count in common)
            if rest:
                print(f"    {rest:>8}  (other outcomes)")
        return 1 if failed else 0
    finally:
        close_targets(chosen)


if __name__ == "__main__":
    sys.exit(main())
