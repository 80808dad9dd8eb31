"""The rig: virtual clock, air, emulated boards and gateways composed, on one asyncio loop in a thread of its own.

Tests and the demo use the thread-safe synchronous API:

    with Rig(workdir, agent_addr=("127.0.0.1", port), air_log=None, speed=None) as rig:
        rig.add_gateway("0016C001FF10A235", (0, 0))
        board = rig.add_board("node1", folder, (200, 50), scenario={"lux": 120})
        ...  # board.link is the tty path for mpremote; board.console the console text
        rig.run_until(lambda: ..., timeout_s=10)

A board added with rak3172=True carries a RAK3172 modem (`dos_rig.rak3172`) on its UART1 (RAK3172_UART_PINS); a
standalone RAK3172 on a pty (`add_rak3172`) is a module a host program drives over a serial port, e.g. a single-channel
receiver in P2P mode.

Every board process is stopped by its PID and every link removed by `stop()`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

from dos_rig.air import Air
from dos_rig.board import ROM_DIR, BoardProcess
from dos_rig.clock import VirtualClock
from dos_rig.forwarder import Gateway
from dos_rig.hardware import BoardHardware
from dos_rig.link import LinkServer, RomLink
from dos_rig.rak3172 import PtyLink, Rak3172
from dos_rig.sensors import Scenario, SensorLog

DEFAULT_EPOCH = "2026-01-01T00:00:00Z"
CALL_TIMEOUT_S = 30.0
RAK3172_UART_PINS = (17, 23)  # the emulated board's UART1: TX GPIO17 -> module RX, RX GPIO23 <- module TX


def epoch_seconds(epoch: str | int) -> int:
    """Unix seconds of an ISO 8601 instant (or seconds as given)."""
    if isinstance(epoch, int):
        return epoch
    return int(datetime.fromisoformat(epoch.replace("Z", "+00:00")).timestamp())


class Board:
    """One emulated board: its process, its link (tty path for tools), its hardware models and logs."""

    def __init__(self, rig: "Rig", board_id: str, folder: Path, link: Path, hardware: BoardHardware, rom: RomLink,
                 process: BoardProcess, sensors: SensorLog, scenario: Scenario, rak3172: Rak3172 | None = None):
        self.rig, self.board_id, self.folder, self.link = rig, board_id, folder, link
        self.hardware, self.rom, self.process, self.sensors, self.scenario = hardware, rom, process, sensors, scenario
        self.rak3172 = rak3172  # the modem on its UART, if it carries one

    @property
    def console(self) -> str:
        """Everything the board printed so far (console log)."""
        path = self.process.console_path
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def restarts(self) -> int:
        return self.process.restarts

    @property
    def position(self) -> tuple:
        return self.hardware.position

    def restart(self) -> None:
        """Reboot the board (as its reset button would)."""
        self.rig.call(self.process.restart)

    def sensor_log(self) -> list[dict]:
        return self.sensors.snapshot()


class Rak3172Port:
    """A standalone RAK3172 on the rig's air whose UART is a pty at `link`."""

    def __init__(self, rig: "Rig", module: Rak3172, pty: PtyLink):
        self.rig, self.module, self.pty = rig, module, pty

    @property
    def link(self) -> Path:
        return self.pty.link

    def reset(self) -> None:
        """Reset the module as a power glitch would (the host has to configure it again)."""
        self.rig.call(self.module.reset)


class Rig:
    """The emulated world. Construct, add gateways and boards (before or after start()), stop() when done."""

    def __init__(self, workdir: str | os.PathLike, agent_addr: tuple[str, int] | None = None,
                 air_log: str | os.PathLike | None = None, speed: float | None = None, epoch: str | int = DEFAULT_EPOCH,
                 stall_limit_s: float = 1.0, busy_limit_s: float = 5.0, hold_grace_s: float = 0.5,
                 path_loss_exponent: float = 2.7, micropython: str | None = None, agent_dedup_s: float = 0.0):
        """hold_grace_s: the longest a gateway holds the clock for the agent's answer to an uplink; agent_dedup_s:
        the agent's dedup window, the least an answer takes (both for the gateways' AnswerGrace)."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.agent_addr = agent_addr
        self.epoch_s = epoch_seconds(epoch)
        self.stall_limit_s, self.busy_limit_s, self.hold_grace_s = stall_limit_s, busy_limit_s, hold_grace_s
        self.agent_dedup_s = agent_dedup_s
        self.micropython = micropython
        self.clock = VirtualClock(speed)
        self.air = Air(self.clock, air_log, path_loss_exponent)
        self.boards: dict[str, Board] = {}
        self.gateways: dict[str, Gateway] = {}
        self.modems: dict[str, Rak3172Port] = {}
        self._links: dict[str, RomLink] = {}
        self._server = LinkServer(self._links)
        self._started = False
        self._stopped = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dos-rig", daemon=True)
        self._thread.start()

    # --- running things on the rig's loop -----------------------------------------------------------------------------
    def call(self, fn: Callable, *args):
        """Run fn(*args) on the rig's loop and return its result (directly when already on it)."""
        if threading.current_thread() is self._thread:
            return fn(*args)
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(CALL_TIMEOUT_S)

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT_S)

    # --- lifecycle ----------------------------------------------------------------------------------------------------
    def start(self) -> "Rig":
        if not self._started:
            self._run(self._start())
            self._started = True
        return self

    async def _start(self) -> None:
        await self._server.start()
        asyncio.get_running_loop().create_task(self.clock.run())
        for gateway in self.gateways.values():
            await gateway.start()
        for board in self.boards.values():
            board.process.start()

    @property
    def link_address(self) -> str:
        """host:port the boards' ROM connects to (DOS_RIG)."""
        return f"127.0.0.1:{self._server.port}"

    def stop(self) -> None:
        """Stop every board process by PID, remove the links, close the gateways and the loop."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self._started:
                self._run(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
            self.air.close()

    async def _stop(self) -> None:
        for port in self.modems.values():
            port.pty.close()
        for board in self.boards.values():
            board.process.stop()
        for gateway in self.gateways.values():
            gateway.close()
        await self._server.close()
        for rom in self._links.values():
            rom.process_ended()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def __enter__(self) -> "Rig":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- building the world -------------------------------------------------------------------------------------------
    def add_gateway(self, eui_hex: str, position: tuple = (0.0, 0.0), agent_addr: tuple[str, int] | None = None,
                    **options) -> Gateway:
        """An 8-channel gateway whose packet forwarder talks to agent_addr (default: the rig's)."""
        address = agent_addr or self.agent_addr
        if address is None:
            raise ValueError("a gateway needs the agent's UDP address (agent_addr)")
        gateway = Gateway(eui_hex, position, self.clock, self.air, address, epoch_s=self.epoch_s,
                          hold_grace_s=self.hold_grace_s, agent_dedup_s=self.agent_dedup_s, **options)
        if gateway.receiver_id in self.gateways:
            raise ValueError(f"gateway {eui_hex} already exists")

        async def add() -> None:
            self.air.attach(gateway)
            self.gateways[gateway.receiver_id] = gateway
            if self._started:
                await gateway.start()

        self._run(add())
        return gateway

    def add_board(self, board_id: str, folder: str | os.PathLike, position: tuple = (0.0, 0.0),
                  scenario: dict | None = None, link: str | os.PathLike | None = None, rak3172: bool = False) -> Board:
        """An emulated board running micropython in folder (created if missing); its tty link is `link` (default
        WORKDIR/<board_id>.tty). It boots main.py when the folder has one. rak3172=True wires a RAK3172 modem to its
        UART1 (RAK3172_UART_PINS)."""
        if board_id in self.boards:
            raise ValueError(f"board {board_id} already exists")
        return self.call(self._add_board, board_id, Path(folder).resolve(), tuple(position), scenario,
                         Path(link) if link else self.workdir / f"{board_id}.tty", rak3172)

    def add_rak3172(self, module_id: str, position: tuple = (0.0, 0.0),
                    link: str | os.PathLike | None = None) -> Rak3172Port:
        """A standalone RAK3172 on the air; its UART is a pty at `link` (default WORKDIR/<module_id>.tty)."""
        if module_id in self.modems or module_id in self.boards:
            raise ValueError(f"{module_id} already exists")
        path = Path(link) if link else self.workdir / f"{module_id}.tty"

        def add() -> Rak3172Port:
            module = Rak3172(module_id, self.clock, self.air, position)
            port = Rak3172Port(self, module, PtyLink(module, path, self._loop))
            self.modems[module_id] = port
            return port

        return self.call(add)

    def _add_board(self, board_id: str, folder: Path, position: tuple, scenario: dict | None, link: Path,
                   rak3172: bool = False) -> Board:
        scenario_model = Scenario(scenario, self.epoch_s)
        sensors = SensorLog(board_id, self.workdir / f"{board_id}.sensors.jsonl")
        hardware = BoardHardware(board_id, self.clock, self.air, position, scenario_model, sensors,
                                 on_irq=lambda pin: rom.irq(pin), on_radio_event=lambda: rom.radio_event())
        uid = hashlib.sha256(board_id.encode()).digest()[:6]
        process: BoardProcess | None = None
        rom = RomLink(board_id, self.clock, hardware, self.epoch_s, uid, on_reset=lambda: process.restart(),
                      stall_limit_s=self.stall_limit_s, busy_limit_s=self.busy_limit_s)

        def environment() -> dict[str, str]:
            return {**os.environ, "MICROPYPATH": f":.frozen:lib:{ROM_DIR}", "DOS_RIG": self.link_address,
                    "DOS_BOARD": board_id, "TZ": "UTC"}

        def process_exited() -> None:
            rom.process_ended()
            hardware.mcu_reset()

        process = BoardProcess(board_id, folder, link, self.workdir / f"{board_id}.console.log", environment,
                               on_start=rom.process_started, on_exit=process_exited, micropython=self.micropython)
        modem = None
        if rak3172:
            modem = Rak3172(board_id, self.clock, self.air, position)
            modem.output = rom.attach_uart(RAK3172_UART_PINS, modem)
        self.clock.add_participant(rom)
        self._links[board_id] = rom
        board = Board(self, board_id, folder, link, hardware, rom, process, sensors, scenario_model, modem)
        self.boards[board_id] = board
        if self._started:
            process.start()
        return board

    def board(self, board_id: str) -> Board:
        return self.boards[board_id]

    # --- observing and steering ---------------------------------------------------------------------------------------
    def now_us(self) -> int:
        """The virtual time (µs since the rig started)."""
        return self.clock.now_us

    def run_until(self, until: Callable[[], object] | int, timeout_s: float = 10.0, poll_s: float = 0.005):
        """Wait (wall time at most timeout_s) until until() is truthy (returns its value), or until the virtual clock
        reaches the instant `until` (µs). Raises TimeoutError."""
        deadline = time.monotonic() + timeout_s
        if isinstance(until, int):
            target = until
            self.call(self.clock.call_at, target, lambda: None)  # something to advance to, even in an empty world
            condition: Callable[[], object] = lambda: self.clock.now_us >= target  # noqa: E731
        else:
            condition = until
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"rig: condition not met within {timeout_s} s (virtual time {self.clock.now_us} µs)")
            time.sleep(poll_s)

    def drop_next(self, sender_id: str, receiver: str | None = None) -> None:
        """The next frame sender_id (a board id or gateway EUI) transmits is lost (for receiver, or for all)."""
        self.call(self.air.drop_next, sender_id, receiver)

    def corrupt_next(self, sender_id: str, flip_bit: int | None = None, receiver: str | None = None) -> None:
        """The next frame sender_id transmits arrives with a flipped bit but a valid LoRa CRC."""
        self.call(self.air.corrupt_next, sender_id, flip_bit, receiver)

    def sensor_log(self, board_id: str) -> list[dict]:
        """Every value board_id's sensors served: {t_us, board, sensor, value}."""
        return self.boards[board_id].sensor_log()

    def air_log(self) -> list[dict]:
        return self.air.log_entries()

    def counters(self) -> dict:
        """What the rig counted: rejected link connections, per board requests/protocol errors/restarts, per gateway."""
        return self.call(lambda: {
            "link_rejected": dict(self._server.rejected),
            "boards": {b.board_id: {"requests": b.rom.requests, "protocol_errors": dict(b.rom.protocol_errors),
                                    "restarts": b.process.restarts, "interrupts": b.process.interrupts_sent,
                                    "uart": dict(b.rom.uart_counters),
                                    "rak3172": dict(b.rak3172.counters) if b.rak3172 else None}
                       for b in self.boards.values()},
            "modems": {m: {**port.module.counters, "pty_dropped_bytes": port.pty.dropped_bytes}
                       for m, port in self.modems.items()},
            "gateways": {g.receiver_id: {**g.counters, "malformed": dict(g.malformed)} for g in self.gateways.values()},
            "holds_expired": self.clock.holds_expired,
        })

    def set_scenario(self, board_id: str, **changes) -> None:
        """Change a board's scenario values from now on (e.g. lux=5)."""
        scenario = self.boards[board_id].scenario
        self.call(lambda: scenario.update(**changes))
