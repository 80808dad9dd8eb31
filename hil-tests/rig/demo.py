"""`dos-edge demo`: the agent, a private Mosquitto and an emulated fleet of streetlights (or nodes of any kind in the
payload schema, in a scenario from hil-tests/scenarios) running the real firmware.

Decoded readings stream to the terminal as they arrive on MQTT. Ctrl-C (or --duration) stops every process it started.
"""
from __future__ import annotations

import argparse
import signal
import tempfile
import time
from pathlib import Path

from dos_codecs.schema import available_kinds
from dos_rig.fleet import Fleet, make_nodes

# A winter afternoon in Dortmund: the demo starts shortly before sunset, so the lamps switch on as it gets dark.
DEMO_START = "2026-01-15T15:20:00Z"
DUSK = "winter_dusk"  # hil-tests/scenarios/winter_dusk.toml


def format_event(event: dict) -> str:
    """One terminal line for an uplink event."""
    readings = "  ".join(f"{name}={r['value']}{(' ' + r['unit']) if r['unit'] else ''}"
                         for name, r in (event.get("readings") or {}).items())
    warn = f"  warnings: {'; '.join(event['warnings'])}" if event.get("warnings") else ""
    return (f"{event.get('asset_id')}  {event.get('kind')}  fcnt {event.get('fcnt')}  {readings}"
            f"  (gw {event.get('gateway_id')} rssi {event.get('rssi')} snr {event.get('snr')}){warn}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dos-edge demo", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3, help="number of emulated nodes (default 3)")
    parser.add_argument("--kind", choices=available_kinds(), default="streetlight",
                        help="node kind (default streetlight)")
    parser.add_argument("--scenario", default=None,
                        help="scenario file name or path (hil-tests/scenarios; default: winter_dusk for streetlights, "
                             "else the rig's defaults)")
    parser.add_argument("--start", default=DEMO_START, help=f"virtual UTC start (default {DEMO_START})")
    parser.add_argument("--interval", type=int, default=60, help="reporting interval in virtual seconds (default 60)")
    parser.add_argument("--speed", type=float, default=60.0, help="virtual seconds per wall second (default 60)")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after streaming for this many wall seconds (default: until Ctrl-C)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs, boards and the air log here")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dos-demo-"))
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    print(f"DOS Edge demo: {args.nodes} {args.kind} nodes, reading every {args.interval} s virtual at {args.speed}x; "
          f"work folder {workdir}", flush=True)
    scenario = args.scenario or (DUSK if args.kind == "streetlight" else None)
    prefix = "SL-DO" if args.kind == "streetlight" else f"{args.kind[:3].upper()}-DO"
    nodes = make_nodes(args.nodes, kind=args.kind, prefix=prefix, interval_s=args.interval, scenario=scenario)
    fleet = Fleet(workdir, nodes, speed=args.speed, epoch=args.start, log=lambda line: print(f"  {line}", flush=True))
    shown = 0
    try:
        fleet.start()
        deadline = None if args.duration is None else time.monotonic() + args.duration
        print("readings (Ctrl-C to stop):", flush=True)
        while not stop["now"] and (deadline is None or time.monotonic() < deadline):
            events = fleet.uplinks()
            for event in events[shown:]:
                print(format_event(event), flush=True)
            shown = len(events)
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping: rig, boards, agent, mosquitto", flush=True)
        fleet.stop()
    print(f"{shown} readings received; logs in {workdir}", flush=True)
    return 0
