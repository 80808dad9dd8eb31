"""The rig's side of the boards' ROM link (rom/_rig_link.py is the board's side) and each board's say in virtual time.

Frames both ways: 2-byte big-endian length, then the body; a request body starts with an op byte. A board connects over
TCP and sends HELLO with its id; the reply carries the virtual epoch (s) and its unique id. Requests are served on the
board's `BoardHardware`; SLEEP replies only when the clock reaches the wake instant (or a pin IRQ comes), RESET never
replies (the rig restarts the process). UART ops reach the serial device the rig wired to the UART's (TX, RX) pins
(`attach_uart`, e.g. a RAK3172): what the board writes goes to the device when both use the same baud rate (else it is
counted as garbled and lost); what the device sends waits in the board's receive buffer (bounded, overflow counted), and
UART_READ replies at once when bytes are there, else when some arrive or its virtual deadline passes (the board sleeps
meanwhile). A malformed frame is counted and logged and closes that connection; the board reconnects.

A `RomLink` is a clock participant: an awake board blocks the clock until it sleeps, or until it has been silent for the
stall limit, awake without sleeping for the busy limit, or only polling (time, pin, read-only SPI/I2C/ADC) for a while:
a board at its REPL, hung or spinning on a register never stops the world.
"""
from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import Callable, Protocol

from dos_rig.clock import Timer, VirtualClock
from dos_rig.hardware import PIN_NSS, BoardHardware

log = logging.getLogger("dos_rig.link")

OP_HELLO = 1
OP_TIME = 2
OP_SLEEP = 3
OP_RESET = 4
OP_PIN_INIT = 16
OP_PIN_WRITE = 17
OP_PIN_READ = 18
OP_PIN_IRQ = 19
OP_SPI_WRITE = 32
OP_SPI_XFER = 33
OP_I2C_WRITE = 48
OP_I2C_READ = 49
OP_I2C_SCAN = 50
OP_ADC_READ = 64
OP_PWM = 80
OP_UART_INIT = 96
OP_UART_WRITE = 97
OP_UART_READ = 98

SLEEP_ABSOLUTE = 1
SLEEP_WAKE_ON_IRQ = 2
FOREVER_US = 1 << 62

UART_RX_BUFFER = 4096  # bytes a board's UART keeps for it before the oldest unread ones are lost
SPIN_POLLS = 64  # this many polls in a row, over at least SPIN_WALL_S, is a board waiting by spinning
SPIN_WALL_S = 0.005


class LinkProtocolError(ValueError):
    """A frame from a board that breaks the link protocol; `reason` is a short counter label."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def encode_frame(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(2)
    length = (head[0] << 8) | head[1]
    if length == 0:
        raise LinkProtocolError("empty_frame")
    return await reader.readexactly(length)


class SerialDevice(Protocol):
    """The far end of a board's UART (a modem on its TX/RX pins)."""

    baudrate: int

    def receive(self, data: bytes) -> None:
        """Bytes the board wrote to the UART."""


class RomLink:
    """One board's link: serves its requests and tells the clock whether the board blocks it."""

    def __init__(self, board_id: str, clock: VirtualClock, hardware: BoardHardware, epoch_s: int, uid: bytes,
                 on_reset: Callable[[], None], stall_limit_s: float = 1.0, busy_limit_s: float = 5.0,
                 wall: Callable[[], float] = time.monotonic):
        self.board_id = board_id
        self.clock, self.hardware = clock, hardware
        self.epoch_s, self.uid = epoch_s, uid
        self.on_reset = on_reset
        self.stall_limit_s, self.busy_limit_s = stall_limit_s, busy_limit_s
        self.wall = wall
        self.connected = False
        self.booting = False
        self.asleep = False
        self.last_activity = 0.0
        self.awake_since = 0.0
        self.poll_streak = 0
        self.streak_start = 0.0
        self.pending_irqs: list[int] = []
        self.requests = 0
        self.protocol_errors: dict[str, int] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._sleep_future: asyncio.Future | None = None
        self._sleep_timer: Timer | None = None
        self._sleep_wakes_on_irq = False
        self.uart_devices: dict[tuple[int, int], SerialDevice] = {}  # (MCU TX pin, MCU RX pin) -> device
        self.uart_counters: dict[str, int] = {}
        self._uart_baud: dict[tuple[int, int], int] = {}
        self._uart_rx: dict[tuple[int, int], bytearray] = {}
        self._uart_waiting: tuple[int, int] | None = None

    # --- UART wiring --------------------------------------------------------------------------------------------------
    def attach_uart(self, pins: tuple[int, int], device: SerialDevice) -> Callable[[bytes], None]:
        """Wire `device` to the board's UART on (TX, RX) pins; returns the function the device sends its bytes with."""
        self.uart_devices[pins] = device
        return lambda data: self.uart_output(pins, data)

    def _uart_count(self, name: str, n: int) -> None:
        self.uart_counters[name] = self.uart_counters.get(name, 0) + n

    def uart_output(self, pins: tuple[int, int], data: bytes) -> None:
        """The device on pins sent bytes: into the board's receive buffer; a board waiting for them wakes."""
        if not (self.connected or self.booting) or self._uart_baud.get(pins) is None:
            self._uart_count("lost_uart_closed", len(data))  # nobody opened the UART: the bytes go nowhere
            return
        if self._uart_baud[pins] != self.uart_devices[pins].baudrate:
            self._uart_count("garbled_baud_mismatch", len(data))
            return
        buffer = self._uart_rx.setdefault(pins, bytearray())
        buffer += data
        if len(buffer) > UART_RX_BUFFER:
            self._uart_count("lost_rx_overflow", len(buffer) - UART_RX_BUFFER)
            del buffer[:len(buffer) - UART_RX_BUFFER]
        if self.asleep and self._uart_waiting == pins:
            self._wake()

    # --- the clock's view ---------------------------------------------------------------------------------------------
    def blocking_until(self, wall_now: float) -> float | None:
        if not (self.connected or self.booting) or self.asleep:
            return None
        until = min(self.last_activity + self.stall_limit_s, self.awake_since + self.busy_limit_s)
        if self.poll_streak >= SPIN_POLLS:  # only polling: waiting by spinning, not working
            until = min(until, self.streak_start + SPIN_WALL_S)
        return until

    def _awake(self) -> None:
        self.asleep = False
        self.awake_since = self.last_activity = self.wall()
        self.poll_streak = 0

    def process_started(self) -> None:
        """The board's process (re)started: it blocks the clock while it boots (until the stall limit)."""
        self.booting = True
        self._awake()
        self.clock.notify()

    def process_ended(self) -> None:
        self.booting = False
        self.pending_irqs.clear()
        self._uart_baud.clear()  # the MCU's UARTs are closed and their buffers gone until the firmware opens them again
        self._uart_rx.clear()
        self._disconnect(self._writer)

    def radio_event(self) -> None:
        """The radio changed state on its own (an IRQ flag): a board spinning on it has to spin again to be idle."""
        self.poll_streak = 0

    def irq(self, pin: int) -> None:
        """An IRQ edge on pin: handlers run at the board's next sleep, which it interrupts at once."""
        if pin not in self.pending_irqs:
            self.pending_irqs.append(pin)
        if self.asleep:
            self._wake()

    # --- connections --------------------------------------------------------------------------------------------------
    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection (after its HELLO) until it closes or breaks the protocol."""
        if self._writer is not None:
            self._disconnect(self._writer)
        self._writer = writer
        self.connected, self.booting = True, False
        self._awake()
        self.clock.notify()
        writer.write(encode_frame(struct.pack(">Q", self.epoch_s) + self.uid))
        try:
            while True:
                body = await read_frame(reader)
                self.requests += 1
                await self._handle(body, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except LinkProtocolError as exc:
            self.protocol_errors[exc.reason] = self.protocol_errors.get(exc.reason, 0) + 1
            log.warning("board %s: bad frame on its link (%s); closing the connection", self.board_id, exc)
        finally:
            self._disconnect(writer)

    def _disconnect(self, writer: asyncio.StreamWriter | None) -> None:
        if writer is None or writer is not self._writer:
            if writer is not None:
                writer.close()
            return
        self._writer = None
        self.connected = False
        self._cancel_sleep()
        writer.close()
        self.clock.notify()

    def _cancel_sleep(self) -> None:
        if self._sleep_timer is not None:
            self._sleep_timer.cancel()
            self._sleep_timer = None
        future, self._sleep_future = self._sleep_future, None
        if future is not None and not future.done():
            future.cancel()
        self.asleep = False
        self._uart_waiting = None

    # --- requests -----------------------------------------------------------------------------------------------------
    def _work(self) -> None:
        self.last_activity = self.wall()
        self.poll_streak = 0

    def _poll(self) -> None:
        now = self.last_activity = self.wall()
        if self.poll_streak == 0:
            self.streak_start = now
        self.poll_streak += 1
        if self.poll_streak == SPIN_POLLS:
            self.clock.notify()

    @staticmethod
    def _unpack(fmt: str, body: bytes) -> tuple:
        try:
            return struct.unpack_from(fmt, body, 1)
        except struct.error:
            raise LinkProtocolError("bad_arguments", f"op {body[0]} with {len(body)} bytes") from None

    async def _handle(self, body: bytes, writer: asyncio.StreamWriter) -> None:
        op = body[0]
        hw = self.hardware
        reply: bytes | None = None
        if op == OP_TIME:
            self._poll()
            reply = struct.pack(">Q", self.clock.now_us)
        elif op == OP_SLEEP:
            flags, value = self._unpack(">BQ", body)
            self._work()
            reply = await self._sleep(flags, value, writer)
            if reply is None:
                return
        elif op == OP_PIN_WRITE:
            pin, level = self._unpack(">BB", body)
            self.last_activity = self.wall()
            if pin != PIN_NSS:
                self.poll_streak = 0
            hw.pin_write(pin, level)
        elif op == OP_PIN_READ:
            (pin,) = self._unpack(">B", body)
            self._poll()
            reply = bytes([hw.pin_read(pin)])
        elif op in (OP_SPI_WRITE, OP_SPI_XFER):
            _bus, sck, mosi, miso = self._unpack(">bBBB", body)
            out, wrote = hw.spi_transfer(sck, mosi, miso, body[5:])
            if op == OP_SPI_XFER:
                reply = out
            self._work() if wrote or op == OP_SPI_WRITE else self._poll()
        elif op == OP_PIN_INIT:
            pin, mode, pull, level = self._unpack(">Bbbb", body)
            self._work()
            hw.pin_init(pin, mode, pull, level)
        elif op == OP_PIN_IRQ:
            pin, trigger = self._unpack(">BB", body)
            self._work()
            hw.pin_irq(pin, trigger)
        elif op == OP_I2C_WRITE:
            _bus, scl, sda, address, _stop = self._unpack(">bBBBB", body)
            self._work()
            error, acked = hw.i2c_write(scl, sda, address, body[6:])
            reply = bytes([error, min(acked, 255)])
        elif op == OP_I2C_READ:
            _bus, scl, sda, address, _stop, nbytes = self._unpack(">bBBBBH", body)
            self._poll()
            error, data = hw.i2c_read(scl, sda, address, nbytes)
            reply = bytes([error]) + data
        elif op == OP_I2C_SCAN:
            _bus, scl, sda = self._unpack(">bBB", body)
            self._work()
            reply = bytes(hw.i2c_scan(scl, sda))
        elif op == OP_ADC_READ:
            (pin,) = self._unpack(">B", body)
            self._poll()
            reply = struct.pack(">IH", *hw.adc_read(pin))
        elif op == OP_PWM:
            pin, freq, duty, enabled = self._unpack(">BIHB", body)
            self._work()
            hw.set_pwm(pin, freq, duty, bool(enabled))
        elif op == OP_UART_INIT:
            _uart_id, baudrate, tx, rx = self._unpack(">bIBB", body)
            self._work()
            self._uart_baud[(tx, rx)] = baudrate
            self._uart_rx.setdefault((tx, rx), bytearray())
        elif op == OP_UART_WRITE:
            tx, rx = self._unpack(">BB", body)
            self._work()
            self._uart_write((tx, rx), body[3:])
        elif op == OP_UART_READ:
            tx, rx, max_bytes, flags, value = self._unpack(">BBHBQ", body)
            reply = await self._uart_read((tx, rx), max_bytes, flags, value, writer)
            if reply is None:
                return
        elif op == OP_RESET:
            self._work()
            self.on_reset()
            return
        else:
            raise LinkProtocolError("unknown_op", f"op {op}")
        if reply is not None:
            writer.write(encode_frame(reply))

    async def _sleep(self, flags: int, value: int, writer: asyncio.StreamWriter) -> bytes | None:
        now = self.clock.now_us
        deadline = min(value if flags & SLEEP_ABSOLUTE else now + value, FOREVER_US)
        if not self.pending_irqs and deadline > now:
            self._sleep_wakes_on_irq = bool(flags & SLEEP_WAKE_ON_IRQ)
            if not await self._doze(deadline, writer):
                return None
        pins, self.pending_irqs = bytes(self.pending_irqs), []
        return struct.pack(">QQ", self.clock.now_us, deadline) + pins

    def _uart_write(self, pins: tuple[int, int], data: bytes) -> None:
        device = self.uart_devices.get(pins)
        if device is None or pins not in self._uart_baud:
            self._uart_count("lost_no_device", len(data))
        elif self._uart_baud[pins] != device.baudrate:
            self._uart_count("garbled_baud_mismatch", len(data))
        else:
            device.receive(bytes(data))

    async def _uart_read(self, pins: tuple[int, int], max_bytes: int, flags: int, value: int,
                         writer: asyncio.StreamWriter) -> bytes | None:
        now = self.clock.now_us
        deadline = min(value if flags & SLEEP_ABSOLUTE else now + value, FOREVER_US)
        buffer = self._uart_rx.get(pins)
        if buffer is None:
            raise LinkProtocolError("uart_not_open", f"UART on pins {pins} read before it was initialised")
        if buffer or deadline <= now:
            self._work() if buffer else self._poll()
        else:
            self._work()
            self._uart_waiting = pins
            if not await self._doze(deadline, writer):
                return None
            buffer = self._uart_rx.get(pins, bytearray())
        data = bytes(buffer[:max_bytes])
        del buffer[:max_bytes]
        return struct.pack(">QQ", self.clock.now_us, deadline) + data

    async def _doze(self, deadline: int, writer: asyncio.StreamWriter) -> bool:
        """Sleep until `deadline` (virtual µs; FOREVER_US: until woken). False when the board's connection went away
        meanwhile (its request is void)."""
        self._sleep_future = asyncio.get_running_loop().create_future()
        self.asleep = True
        if deadline < FOREVER_US:
            self._sleep_timer = self.clock.call_at(deadline, self._wake)
        self.clock.notify()
        try:
            await self._sleep_future
        except asyncio.CancelledError:
            if writer is not self._writer:
                return False
            raise
        return True

    def _wake(self) -> None:
        self._uart_waiting = None
        if self._sleep_timer is not None:
            self._sleep_timer.cancel()
            self._sleep_timer = None
        self._awake()
        future, self._sleep_future = self._sleep_future, None
        if future is not None and not future.done():
            future.set_result(None)


class LinkServer:
    """TCP server the boards' ROM connects to; routes each connection to its board by the id in HELLO."""

    def __init__(self, links: dict[str, RomLink]):
        self.links = links
        self.rejected: dict[str, int] = {}
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._connections: dict[asyncio.Task, asyncio.StreamWriter] = {}

    async def start(self, host: str = "127.0.0.1") -> int:
        self._server = await asyncio.start_server(self._handle, host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening and end every connection (their tasks finish on their own)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._connections.values():
            writer.close()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=2.0)

    def _reject(self, reason: str, detail: str, writer: asyncio.StreamWriter) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        log.warning("rig link: rejected a connection (%s: %s)", reason, detail)
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections[task] = writer
        try:
            await self._serve_connection(reader, writer)
        finally:
            del self._connections[task]

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            body = await asyncio.wait_for(read_frame(reader), timeout=5.0)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
            self._reject("no_hello", "closed or silent before HELLO", writer)
            return
        except LinkProtocolError as exc:
            self._reject(exc.reason, "before HELLO", writer)
            return
        if body[0] != OP_HELLO:
            self._reject("no_hello", f"first op {body[0]}", writer)
            return
        board_id = body[1:].decode("utf-8", "replace")
        link = self.links.get(board_id)
        if link is None:
            self._reject("unknown_board", repr(board_id), writer)
            return
        await link.serve(reader, writer)
