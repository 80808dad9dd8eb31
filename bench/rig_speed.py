"""Rig speed: virtual seconds per wall second of the whole emulated deployment (never asserts; see bench/README.md).

Each fleet is the real thing the HIL tests run: a private Mosquitto, the agent process (the fleet's 20 ms dedup
window), the rig with one gateway and N streetlight boards running the real firmware in `micropython` (installed with
mpremote, twelve at a time), each reporting every 60 virtual seconds, the clock free-running (no speed cap). After the
boards' first uplinks, the virtual clock and the uplink events on MQTT are sampled over a wall-time window. The
baseline is one board in the same run: the ratios say how the rig scales with the number of boards. Goal: >= 50
virtual s per wall s with 10 boards. Each line also shows the answer grace the gateway learned (how long an uplink
holds the clock when the agent sends no downlink) and how long the fleet took to start.

The default run (`./dev.sh bench`) measures 1 and 10 boards; `--nodes 1,10,50` adds 50.

Usage: python bench/rig_speed.py [--nodes 1,10] [--window S]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from dos_rig.fleet import Fleet, make_nodes

GOAL_AT_10 = 50.0
INTERVAL_S = 60


@dataclass
class FleetSpeed:
    """One fleet's figures."""
    virtual_per_wall: float  # virtual seconds per wall second
    uplinks_per_board_minute: float  # uplink events per board per virtual minute (1.00 expected)
    start_s: float  # wall seconds to start the fleet (broker, agent, rig, installs)
    grace_ms: float  # the gateway's learned answer grace at the end of the window


def measure(workdir: Path, count: int, window_s: float) -> FleetSpeed:
    started = time.monotonic()
    with Fleet(workdir, make_nodes(count, interval_s=INTERVAL_S)) as fleet:
        start_s = time.monotonic() - started
        if not fleet.tap.wait_for(lambda messages: len(fleet.uplinks()) >= count, timeout_s=60 + 2 * count):
            raise RuntimeError(f"{count} boards: only {len(fleet.uplinks())} first uplinks came")
        wall0, virtual0, uplinks0 = time.monotonic(), fleet.rig.now_us(), len(fleet.uplinks())
        time.sleep(window_s)
        wall1, virtual1, uplinks1 = time.monotonic(), fleet.rig.now_us(), len(fleet.uplinks())
        (gateway,) = fleet.rig.gateways.values()
        grace_ms = fleet.rig.call(lambda: gateway.answer_grace.grace_s) * 1000
    virtual_s = (virtual1 - virtual0) / 1e6
    per_board_per_min = (uplinks1 - uplinks0) / count / (virtual_s / 60) if virtual_s > 0 else 0.0
    return FleetSpeed(virtual_s / (wall1 - wall0), per_board_per_min, start_s, grace_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,10", help="fleet sizes, comma-separated (default 1,10)")
    parser.add_argument("--window", type=float, default=20.0, help="wall seconds sampled per fleet (default 20)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.nodes.split(",")]
    results: dict[int, FleetSpeed] = {}
    with tempfile.TemporaryDirectory(prefix="dos-bench-rig-") as tmp:
        for count in sizes:
            result = results[count] = measure(Path(tmp) / f"fleet{count}", count, args.window)
            print(f"{count:>3} boards: {result.virtual_per_wall:7.1f} virtual s / wall s; "
                  f"{result.uplinks_per_board_minute:.2f} uplinks per board per virtual minute (1.00 expected); "
                  f"answer grace {result.grace_ms:.0f} ms; fleet start {result.start_s:.0f} s", flush=True)
    baseline = results[sizes[0]].virtual_per_wall
    print()
    for count in sizes:
        print(f"{count:>3} boards / {sizes[0]} board(s): {results[count].virtual_per_wall / baseline:.2f}")
    if 10 in results:
        speed = results[10].virtual_per_wall
        print(f"goal >= {GOAL_AT_10:.0f} virtual s / wall s with 10 boards: {speed:.1f} -> "
              + ("met" if speed >= GOAL_AT_10 else "MISSED"))


if __name__ == "__main__":
    main()
