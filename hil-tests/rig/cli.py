"""`dos-edge rig ...`: run parts of the emulated world from the command line.

    dos-edge rig board --dir DIR --tty LINK [--agent HOST:PORT] [--scenario NAME|FILE]

starts one emulated board (micropython in DIR, its serial port at LINK for mpremote / flash.sh) whose radio is on the
air of a rig with one gateway forwarding to the agent over Semtech UDP, its sensors those of the scenario's kit (a file
in hil-tests/scenarios, e.g. school_day for an environment node; default: the streetlight kit); it runs until Ctrl-C or
SIGTERM, then stops every process it started and removes the link.

    dos-edge rig rak3172 --tty LINK [--board-dir DIR --board-tty LINK2] [--speed S]

puts an emulated RAK3172 module on the air with its UART on a pty at LINK (for a host program such as the agent's serial
receiver: P2P continuous receive hears every frame on its channel), optionally beside one emulated board (micropython in
DIR, its serial port at LINK2) whose uplinks it can hear; SIGUSR1 resets the module (as a power glitch would), Ctrl-C or
SIGTERM stops everything.
"""
from __future__ import annotations

import argparse
import signal
import tempfile
import threading
from pathlib import Path

from dos_rig.rig import Rig
from dos_rig.scenarios import ScenarioError, load_scenario

DEFAULT_GATEWAY_EUI = "0016C001FF10A235"


def host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def position(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y in metres, got {text!r}") from None
    return x, y


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dos-edge rig", description="the emulated world of the HIL rig")
    commands = parser.add_subparsers(dest="command", required=True)
    board = commands.add_parser("board", help="run one emulated board with a gateway until Ctrl-C / SIGTERM")
    board.add_argument("--dir", type=Path, required=True, help="the board's filesystem (created if missing)")
    board.add_argument("--tty", type=Path, required=True, help="where to put the board's serial link (a symlink)")
    board.add_argument("--agent", type=host_port, default=("127.0.0.1", 1700),
                       help="the agent's Semtech UDP address (default 127.0.0.1:1700)")
    board.add_argument("--board-id", default="board1", help="the board's id (default board1)")
    board.add_argument("--gateway-eui", default=DEFAULT_GATEWAY_EUI, help=f"default {DEFAULT_GATEWAY_EUI}")
    board.add_argument("--position", type=position, default=(200.0, 50.0),
                       help="board position X,Y in metres from the gateway (default 200,50)")
    board.add_argument("--speed", type=float, default=None,
                       help="virtual seconds per wall second (default: as fast as the board allows)")
    board.add_argument("--workdir", type=Path, default=None, help="console, sensor and air logs (default: a temp dir)")
    board.add_argument("--scenario", default=None,
                       help="scenario file name (hil-tests/scenarios) or path: the board's sensor kit and environment")
    modem = commands.add_parser("rak3172", help="run an emulated RAK3172 on a pty until Ctrl-C / SIGTERM")
    modem.add_argument("--tty", type=Path, required=True, help="where to put the module's serial port (a symlink)")
    modem.add_argument("--module-id", default="rak1", help="the module's id on the air (default rak1)")
    modem.add_argument("--position", type=position, default=(0.0, 0.0), help="module position X,Y in metres")
    modem.add_argument("--board-dir", type=Path, default=None, help="also run an emulated board with this filesystem")
    modem.add_argument("--board-tty", type=Path, default=None, help="the board's serial link (with --board-dir)")
    modem.add_argument("--board-position", type=position, default=(200.0, 50.0),
                       help="the board's position X,Y in metres (default 200,50)")
    modem.add_argument("--speed", type=float, default=1.0,
                       help="virtual seconds per wall second (default 1: the host program runs in real time)")
    modem.add_argument("--workdir", type=Path, default=None, help="console and air logs (default: a temp dir)")
    return parser


def _until_stopped(extra_signals: dict | None = None):
    """A stop Event set by SIGINT/SIGTERM, and the previous handlers to restore; extra_signals maps more signals to
    their handlers."""
    stop = threading.Event()
    handlers = {signal.SIGINT: lambda *_: stop.set(), signal.SIGTERM: lambda *_: stop.set(), **(extra_signals or {})}
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    return stop, previous


def run_rak3172(args: argparse.Namespace) -> int:
    if (args.board_dir is None) != (args.board_tty is None):
        raise SystemExit("--board-dir and --board-tty go together")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dos-rig-"))
    resets = threading.Event()
    stop, previous = _until_stopped({signal.SIGUSR1: lambda *_: resets.set()})
    try:
        with Rig(workdir, air_log=workdir / "air.jsonl", speed=args.speed) as rig:
            port = rig.add_rak3172(args.module_id, args.position, link=args.tty)
            print(f"rak3172 {args.module_id}: serial port {port.link} (115200 8N1); logs in {workdir}", flush=True)
            if args.board_dir is not None:
                board = rig.add_board("board1", args.board_dir, args.board_position, link=args.board_tty)
                print(f"board board1: folder {args.board_dir.resolve()}, serial link {board.link}", flush=True)
            print("running until Ctrl-C (SIGUSR1 resets the module)", flush=True)
            while not stop.wait(0.2):
                if resets.is_set():
                    resets.clear()
                    port.reset()
                    print(f"rak3172 {args.module_id}: reset", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped", flush=True)
    return 0


def run_board(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario) if args.scenario else None
    except ScenarioError as exc:
        raise SystemExit(f"dos-edge rig board: {exc}") from None
    stop, previous = _until_stopped()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dos-rig-"))
    try:
        with Rig(workdir, agent_addr=args.agent, air_log=workdir / "air.jsonl", speed=args.speed) as rig:
            rig.add_gateway(args.gateway_eui, (0.0, 0.0))
            board = rig.add_board(args.board_id, args.dir, args.position, scenario=scenario, link=args.tty)
            print(f"board {args.board_id}: folder {args.dir.resolve()}, serial link {board.link}; gateway "
                  f"{args.gateway_eui} -> agent udp {args.agent[0]}:{args.agent[1]}; logs in {workdir}", flush=True)
            print("running until Ctrl-C", flush=True)
            while not stop.wait(0.2):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"board": run_board, "rak3172": run_rak3172}[args.command](args)
