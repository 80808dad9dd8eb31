"""Rig speed: virtual seconds per wall second of the whole emulated deployment (never asserts; see bench/README.md).

Each fleet is the real thing the HIL tests run: a private Mosquitto, the agent process, the rig with one gateway and
N streetlight boards running the real firmware in `micropython` (installed with mpremote), each reporting every 60
virtual seconds, the clock free-running (no speed cap). After the boards' first uplinks, the virtual clock and the
uplink events on MQTT are sampled over a wall-time window. The baseline is one board in the same run: the ratios say
how the rig scales with the number of boards. Goal: >= 50 virtual s per wall s with 10 boards.

The default run (`./dev.sh bench`) measures 1 and 10 boards; `--nodes 1,10,50` adds 50, whose start alone (mpremote
installs the boards one by one) takes about five minutes. With 10 boards it also measures, for comparison, the agent
without a dedup window and the forwarder waiting only 50 ms for the agent's answer to each uplink (the rig's default
is 0.5 s): the difference is what that grace costs.

Usage: python bench/rig_speed.py [--nodes 1,10] [--window S] [--no-grace-run]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dos_rig.fleet import Fleet, make_nodes

GOAL_AT_10 = 50.0
INTERVAL_S = 60
#: The forwarder's real-time grace for an agent answer in the comparison run (the rig's default is 0.5 s).
SHORT_GRACE_S = 0.05


def measure(workdir: Path, count: int, window_s: float, short_grace: bool = False) -> tuple[float, float, float]:
    """(virtual s per wall s, uplinks per virtual minute per board, wall seconds to start the fleet). With
    `short_grace` the agent runs without a dedup window (one gateway) and the forwarder waits SHORT_GRACE_S for its
    answer to an uplink: what the default grace costs."""
    started = time.monotonic()
    agent_args = ("--dedup-ms", "0") if short_grace else ()
    with Fleet(workdir, make_nodes(count, interval_s=INTERVAL_S), agent_args=agent_args) as fleet:
        start_s = time.monotonic() - started
        if short_grace:
            for gateway in fleet.rig.gateways.values():
                gateway.hold_grace_s = SHORT_GRACE_S
        if not fleet.tap.wait_for(lambda messages: len(fleet.uplinks()) >= count, timeout_s=60 + 2 * count):
            raise RuntimeError(f"{count} boards: only {len(fleet.uplinks())} first uplinks came")
        wall0, virtual0, uplinks0 = time.monotonic(), fleet.rig.now_us(), len(fleet.uplinks())
        time.sleep(window_s)
        wall1, virtual1, uplinks1 = time.monotonic(), fleet.rig.now_us(), len(fleet.uplinks())
    virtual_s = (virtual1 - virtual0) / 1e6
    per_board_per_min = (uplinks1 - uplinks0) / count / (virtual_s / 60) if virtual_s > 0 else 0.0
    return virtual_s / (wall1 - wall0), per_board_per_min, start_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,10", help="fleet sizes, comma-separated (default 1,10)")
    parser.add_argument("--window", type=float, default=20.0, help="wall seconds sampled per fleet (default 20)")
    parser.add_argument("--no-grace-run", action="store_true",
                        help="skip the 10-board run with a short forwarder grace and no dedup window")
    args = parser.parse_args()
    sizes = [int(n) for n in args.nodes.split(",")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="dos-bench-rig-") as tmp:
        for count in sizes:
            results[count] = measure(Path(tmp) / f"fleet{count}", count, args.window)
            speed, rate, start_s = results[count]
            print(f"{count:>3} boards: {speed:7.1f} virtual s / wall s; {rate:.2f} uplinks per board per virtual "
                  f"minute (1.00 expected); fleet start {start_s:.0f} s", flush=True)
        short = None
        if 10 in sizes and not args.no_grace_run:
            short = measure(Path(tmp) / "fleet10-short-grace", 10, args.window, short_grace=True)
            print(f" 10 boards, agent --dedup-ms 0, forwarder grace {SHORT_GRACE_S * 1000:.0f} ms: {short[0]:7.1f} "
                  f"virtual s / wall s; {short[1]:.2f} uplinks per board per virtual minute", flush=True)
    baseline = results[sizes[0]][0]
    print()
    for count in sizes:
        print(f"{count:>3} boards / {sizes[0]} board(s): {results[count][0] / baseline:.2f}")
    if short is not None:
        print(f" 10 boards, short grace / default grace: {short[0] / results[10][0]:.2f}")
    if 10 in results:
        speed = results[10][0]
        print(f"goal >= {GOAL_AT_10:.0f} virtual s / wall s with 10 boards: {speed:.1f} -> "
              + ("met" if speed >= GOAL_AT_10 else "MISSED"))


if __name__ == "__main__":
    main()
