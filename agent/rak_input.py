"""A RAK3172 (RUI3 AT firmware) on a serial port as a single-channel LoRaWAN receiver: an input beside Semtech UDP.

The module is put in LoRa P2P continuous receive on one channel and spreading factor with the LoRaWAN sync word and
normal IQ (AT+NWM=0, AT+PRECV=0, AT+P2P=freq:sf:bw:cr:preamble:txp, AT+SYNCWORD=3444, AT+IQINVER=0, AT+PRECV=65534),
so every uplink it hears intact arrives as `+EVT:RXP2P:<rssi>:<snr>:<HEX>`; those PHYPayloads go to the session layer
as receptions of a pseudo-gateway (`rak3172-<port name>` unless configured) that has no downlink path (its receptions
say `can_transmit=False`, so the session layer plans downlinks through other gateways only).

Two layers:
- `ReceiverCore` is sans-IO: bytes and (monotonic) time in, `SendLine` / `FrameHeard` / `LineRejected` / `Notice`
  actions out. It splits lines, parses them (`parse_line`; a typed `AtLineError` is counted by reason and becomes a
  `LineRejected` action, never raised out of `feed`), runs the configuration sequence one command at a time, and
  finds a module reset: its boot banner, an error or a stopped receiver reported to the periodic probe (AT+PRECV=?),
  no answer within the reply timeout, or an unexpected `+EVT:RXP2P RECEIVE TIMEOUT`. Any of them sends the
  configuration again.
- `RakInput` is the asyncio edge: opens the port with pyserial (115200 8N1), reads it with `loop.add_reader`, writes
  the core's lines, runs its deadlines, and reopens the port (every `REOPEN_S`) when it cannot be opened or goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import serial

from dos_agent.counters import Counters
from dos_agent.events import iso_utc
from dos_agent.gwmp_server import RateLimitedLog
from dos_agent.session import Reception
from dos_codecs.rak3172 import (AT_MODE_NO_SUPPORT, OK, BANNER_STARTS, BAUDRATE, EVENT_PREFIX, LORAWAN_SYNC_WORD, MAX_LINE, P2P_BANDWIDTHS_KHZ,
                                PRECV_CONTINUOUS, RX_P2P_EVENT, RX_P2P_TIMEOUT_EVENT, STATUS_LINES, AtLineError, RxP2p,
                                parse_rx_p2p)

log = logging.getLogger("dos_agent.rak3172")

#: AT+P2P bandwidth index by bandwidth in kHz.
BANDWIDTH_INDEX = {khz: index for index, khz in enumerate(P2P_BANDWIDTHS_KHZ)}
RX_EVENT = EVENT_PREFIX + RX_P2P_EVENT
RX_TIMEOUT_EVENT = EVENT_PREFIX + RX_P2P_TIMEOUT_EVENT

REPLY_TIMEOUT_S = 2.0  # a command not answered by then: the module is gone or rebooting
PROBE_EVERY_S = 30.0  # while receiving, ask AT+PRECV=? this often
BOOT_SETTLE_S = 0.3  # after a boot banner, wait this long before configuring (the banner has several lines)
RETRY_S = 2.0  # after a refused command, configure again this much later
REOPEN_S = 1.0  # a port that cannot be opened (or went away) is tried again this often


# --- lines ------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Status:
    """A reply's status line (OK, AT_ERROR, AT_BUSY_ERROR, ...)."""

    text: str


@dataclass(frozen=True, slots=True)
class Event:
    """Any other `+EVT:` line (e.g. RXP2P RECEIVE TIMEOUT, TXP2P DONE)."""

    text: str


@dataclass(frozen=True, slots=True)
class Banner:
    """A line of the boot banner: the module has just reset."""

    text: str


@dataclass(frozen=True, slots=True)
class Value:
    """Any other line: a reply's value line (e.g. `65534` to AT+PRECV=?)."""

    text: str


Line = RxP2p | Status | Event | Banner | Value


def parse_line(raw: bytes) -> Line | None:
    """One line from the module (without its line end) -> what it is; None for a blank line. Raises AtLineError."""
    if len(raw) > MAX_LINE:
        raise AtLineError("line_too_long", f"line of {len(raw)} bytes")
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise AtLineError("not_ascii", "line holds non-ASCII bytes") from None
    if not text:
        return None
    if not text.isprintable():
        raise AtLineError("control_chars", "line holds control characters")
    upper = text.upper()
    if upper.startswith(RX_EVENT):
        return parse_rx_p2p(text[len(RX_EVENT):])
    if upper.startswith(EVENT_PREFIX):
        return Event(text)
    if text in STATUS_LINES:
        return Status(text)
    if upper.startswith(BANNER_STARTS):
        return Banner(text)
    return Value(text)


# --- the receiver's sans-IO core --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RadioSettings:
    """The channel the receiver listens on. `coding_rate` 0..3 is 4/5..4/8; `tx_power_dbm` only fills AT+P2P."""

    frequency_hz: int = 868_100_000
    sf: int = 7
    bw_khz: int = 125
    coding_rate: int = 0
    preamble: int = 8
    tx_power_dbm: int = 14

    def __post_init__(self) -> None:
        if not 150_000_000 <= self.frequency_hz <= 960_000_000:
            raise ValueError(f"RAK3172 frequency {self.frequency_hz} Hz is outside 150..960 MHz")
        if not 7 <= self.sf <= 12:
            raise ValueError(f"RAK3172 spreading factor {self.sf} is not 7..12")
        if self.bw_khz not in BANDWIDTH_INDEX:
            raise ValueError(f"RAK3172 bandwidth {self.bw_khz} kHz is not one of 125, 250, 500")
        if not 0 <= self.coding_rate <= 3 or not 5 <= self.preamble <= 65535 or not 5 <= self.tx_power_dbm <= 22:
            raise ValueError("RAK3172 coding rate 0..3, preamble 5..65535, TX power 5..22 dBm")

    def p2p_command(self) -> str:
        """AT+P2P=freq:sf:bw:cr:preamble:txp."""
        return (f"AT+P2P={self.frequency_hz}:{self.sf}:{BANDWIDTH_INDEX[self.bw_khz]}:{self.coding_rate}:"
                f"{self.preamble}:{self.tx_power_dbm}")

    def setup_commands(self) -> tuple[str, ...]:
        """The configuration sequence: P2P mode, receive off (AT+P2P is refused while receiving), the channel, the
        LoRaWAN sync word and normal IQ (uplinks), then continuous receive. "AT" first finds the module listening."""
        return ("AT", "AT+NWM=0", "AT+PRECV=0", self.p2p_command(), f"AT+SYNCWORD={LORAWAN_SYNC_WORD}",
                "AT+IQINVER=0", f"AT+PRECV={PRECV_CONTINUOUS}")


@dataclass(frozen=True, slots=True)
class SendLine:
    """Write this command line (the edge adds CR LF)."""

    text: str


@dataclass(frozen=True, slots=True)
class FrameHeard:
    """A PHYPayload the module heard, with its signal."""

    phy: bytes
    rssi: int
    snr: int


@dataclass(frozen=True, slots=True)
class LineRejected:
    """A line that could not be used (a AtLineError): `reason` is its counter label."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something worth a log line: `kind` is `configured`, `module_reset` or `command_failed`, `detail` says why."""

    kind: str
    detail: str


Action = SendLine | FrameHeard | LineRejected | Notice
PROBE_COMMAND = "AT+PRECV=?"


class ReceiverCore:
    """The receiver's state machine. Call `opened(now)` when the port opens, `feed(bytes, now)` with what it reads,
    `tick(now)` at `next_deadline()` (or any time), `closed()` when the port goes away; carry out the actions returned.

    States: `closed`, `configuring` (a command of the sequence waits for its reply), `booting` (after a boot banner,
    until it has been quiet for `boot_settle_s`), `settling` (after a refused command, for `retry_s`), `receiving`
    (configured; probes every `probe_every_s`). `counts` has every line by outcome (`frame`, a AtLineError reason,
    `unexpected_*`) and `module_reset`, `configured`, `no_reply`, `command_failed`, `probe_error`."""

    def __init__(self, radio: RadioSettings, reply_timeout_s: float = REPLY_TIMEOUT_S,
                 probe_every_s: float = PROBE_EVERY_S, boot_settle_s: float = BOOT_SETTLE_S,
                 retry_s: float = RETRY_S) -> None:
        self.commands = radio.setup_commands()
        self._channel = radio.p2p_command()
        self.reply_timeout_s, self.probe_every_s = reply_timeout_s, probe_every_s
        self.boot_settle_s, self.retry_s = boot_settle_s, retry_s
        self.counts: Counter[str] = Counter()
        self.state = "closed"
        self._buffer = bytearray()
        self._overlong = False
        self._step = 0  # index in `commands` of the command waiting for its reply (configuring)
        self._pending: str | None = None  # the command waiting for its reply
        self._pending_value: str | None = None
        self._reply_due = 0.0
        self._wake_at: float | None = None  # booting, settling: configure then; receiving: probe then

    # --- inputs -------------------------------------------------------------------------------------------------------
    def opened(self, now: float) -> list[Action]:
        """The port is open: configure the module from the start."""
        self._buffer.clear()
        self._overlong = False
        return self._configure(now)

    def closed(self) -> None:
        """The port went away: nothing is pending any more."""
        self.state = "closed"
        self._pending = self._wake_at = None
        self._buffer.clear()

    def feed(self, data: bytes, now: float) -> list[Action]:
        """Bytes read from the port -> actions. Never raises on any input."""
        actions: list[Action] = []
        for byte in data:
            if byte in (0x0A, 0x0D):
                raw, overlong = bytes(self._buffer), self._overlong
                self._buffer.clear()
                self._overlong = False
                if overlong:
                    self.counts["line_too_long"] += 1
                    actions.append(LineRejected("line_too_long", f"a line over {MAX_LINE} bytes"))
                elif raw:
                    actions += self.line(raw, now)
            elif len(self._buffer) > MAX_LINE:
                self._overlong = True
            else:
                self._buffer.append(byte)
        return actions

    def line(self, raw: bytes, now: float) -> list[Action]:
        """One complete line (no line end) -> actions; a malformed line is counted by reason."""
        try:
            parsed = parse_line(raw)
        except AtLineError as exc:
            self.counts[exc.reason] += 1
            return [LineRejected(exc.reason, exc.detail)]
        if parsed is None:
            return []
        if isinstance(parsed, RxP2p):
            self.counts["frame"] += 1
            return [FrameHeard(parsed.phy, parsed.rssi, parsed.snr)]
        if isinstance(parsed, Banner) or self.state == "booting":  # RUI3's banner has other lines too (Version: ...)
            return self._banner(parsed, now)
        if isinstance(parsed, Event):
            if parsed.text.upper() == RX_TIMEOUT_EVENT and self.state == "receiving":
                return self._reset_found("receive stopped (RXP2P RECEIVE TIMEOUT)", now)
            self.counts["unexpected_event"] += 1
            return []
        if self._pending is None:
            self.counts["unexpected_reply" if isinstance(parsed, Status) else "unexpected_line"] += 1
            return []
        if isinstance(parsed, Value):
            self._pending_value = parsed.text
            return []
        return self._reply(parsed.text, now)

    def tick(self, now: float) -> list[Action]:
        """Time passed: a reply overdue, the end of settling, or the next probe."""
        if self._pending is not None and now >= self._reply_due:
            self.counts["no_reply"] += 1
            command = self._pending
            if self.state == "receiving":
                return self._reset_found(f"no answer to the probe {command}", now)
            return [Notice("command_failed", f"no answer to {command}"), *self._configure(now)]
        if self._wake_at is not None and now >= self._wake_at:
            if self.state in ("booting", "settling"):
                return self._configure(now)
            if self.state == "receiving" and self._pending is None:
                return [self._send(PROBE_COMMAND, now)]
        return []

    def next_deadline(self) -> float | None:
        """When `tick` has something to do next (None: nothing until more bytes come)."""
        if self._pending is not None:
            return self._reply_due
        return self._wake_at

    # --- the configuration sequence and the probe ---------------------------------------------------------------------
    def _send(self, command: str, now: float) -> SendLine:
        self._pending, self._pending_value = command, None
        self._reply_due = now + self.reply_timeout_s
        return SendLine(command)

    def _configure(self, now: float) -> list[Action]:
        self.state, self._step, self._wake_at = "configuring", 0, None
        return [self._send(self.commands[0], now)]

    def _wait(self, state: str, seconds: float, now: float) -> None:
        self.state, self._pending, self._wake_at = state, None, now + seconds

    def _reset_found(self, why: str, now: float) -> list[Action]:
        self.counts["module_reset"] += 1
        return [Notice("module_reset", why), *self._configure(now)]

    def _banner(self, banner: Line, now: float) -> list[Action]:
        if self.state == "booting":
            self._wake_at = now + self.boot_settle_s  # another line of the same banner
            return []
        self.counts["module_reset"] += 1
        self._wait("booting", self.boot_settle_s, now)
        return [Notice("module_reset", f"boot banner {banner.text[:60]!r}")]

    def _reply(self, status: str, now: float) -> list[Action]:
        command, value = self._pending, self._pending_value
        self._pending = None
        if self.state == "receiving":  # the probe's answer
            self._wake_at = now + self.probe_every_s
            if status == AT_MODE_NO_SUPPORT or (status == OK and value is not None and value != str(PRECV_CONTINUOUS)):
                return self._reset_found(f"the probe found receive off ({status} {value})", now)
            if status != OK:
                self.counts["probe_error"] += 1
            return []
        if status != OK:
            self.counts["command_failed"] += 1
            self._wait("settling", self.retry_s, now)
            return [Notice("command_failed", f"{command} answered {status}")]
        self._step += 1
        if self._step < len(self.commands):
            return [self._send(self.commands[self._step], now)]
        self.state, self._wake_at = "receiving", now + self.probe_every_s
        self.counts["configured"] += 1
        return [Notice("configured", self._channel)]


# --- the asyncio edge -------------------------------------------------------------------------------------------------

def default_gateway_id(port: str) -> str:
    """The pseudo-gateway's id: `rak3172-<port name>` (e.g. rak3172-ttyUSB0)."""
    return f"rak3172-{Path(port).name}"


def host_tmst() -> int:
    """A concentrator-like µs counter (32 bits, wrapping) from the host's monotonic clock."""
    return (time.monotonic_ns() // 1000) & 0xFFFFFFFF


class RakInput:
    """The receiver on a serial port, on the running asyncio loop. `on_frame(phy, reception, now)` gets every frame
    heard (`now` from `clock`, Unix seconds). With `counters`, the pseudo-gateway is marked seen on every frame and a
    rejected line is counted as frame result `rak3172_<reason>`. `start()` / `stop()`."""

    def __init__(self, port: str, radio: RadioSettings, on_frame: Callable[[bytes, Reception, float], None],
                 gateway_id: str | None = None, counters: Counters | None = None,
                 clock: Callable[[], float] = time.time, baudrate: int = BAUDRATE,
                 reopen_s: float = REOPEN_S) -> None:
        self.port, self.radio, self.on_frame = port, radio, on_frame
        self.gateway_id = gateway_id or default_gateway_id(port)
        self.counters, self.clock, self.baudrate, self.reopen_s = counters, clock, baudrate, reopen_s
        self.core = ReceiverCore(radio)
        self.opens = 0
        self._serial: serial.Serial | None = None
        self._lost: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._bad_log = RateLimitedLog(log)

    @property
    def counts(self) -> Counter[str]:
        """Lines and module events by outcome (see ReceiverCore)."""
        return self.core.counts

    async def start(self) -> None:
        """Run in the background: open (and reopen) the port, configure the module, hand over what it hears."""
        self._task = asyncio.create_task(self._run(), name=f"rak3172-{self.port}")

    async def stop(self) -> None:
        """Stop reading and close the port."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        unavailable_logged = False
        while True:
            try:
                self._serial = serial.Serial(self.port, self.baudrate, timeout=0, write_timeout=1, exclusive=True)
            except (serial.SerialException, OSError, ValueError) as exc:
                if not unavailable_logged:
                    log.warning("rak3172: cannot open %s (%s); trying again every %.0f s", self.port, exc,
                                self.reopen_s)
                    unavailable_logged = True
                await asyncio.sleep(self.reopen_s)
                continue
            unavailable_logged = False
            self.opens += 1
            log.info("rak3172: %s open as gateway %s, configuring %s", self.port, self.gateway_id,
                     self.radio.p2p_command())
            self._lost, self._wake = asyncio.Event(), asyncio.Event()
            try:
                self._serial.reset_input_buffer()
                loop.add_reader(self._serial.fileno(), self._readable)
                self._carry_out(self.core.opened(time.monotonic()))
                await self._serve()
            finally:
                self._close()
            log.warning("rak3172: %s went away; reopening", self.port)
            await asyncio.sleep(self.reopen_s)

    async def _serve(self) -> None:
        """Run the core's deadlines until the port is lost."""
        assert self._lost is not None and self._wake is not None
        while not self._lost.is_set():
            deadline = self.core.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            if not self._lost.is_set():
                self._carry_out(self.core.tick(time.monotonic()))

    def _readable(self) -> None:
        try:
            data = self._serial.read(4096) if self._serial is not None else b""
        except (serial.SerialException, OSError) as exc:
            self._port_lost(exc)
            return
        self._carry_out(self.core.feed(data, time.monotonic()))

    def _carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendLine):
                self._write(action.text)
            elif isinstance(action, FrameHeard):
                self._frame(action)
            elif isinstance(action, LineRejected):
                if self.counters is not None:
                    self.counters.count_frame(f"rak3172_{action.reason}")
                self._bad_log.warning(action.reason, f"rak3172: {self.gateway_id}: bad line: {action.reason}: "
                                      f"{action.detail}", time.monotonic())
            elif action.kind == "configured":
                log.info("rak3172: %s receiving on %s (continuous)", self.gateway_id, self.radio.p2p_command())
            else:
                self._bad_log.warning(action.kind, f"rak3172: {self.gateway_id}: {action.kind}: {action.detail}",
                                      time.monotonic())
        if self._wake is not None:
            self._wake.set()  # the next deadline may have moved

    def _write(self, text: str) -> None:
        if self._serial is None:
            return
        try:
            self._serial.write(text.encode("ascii") + b"\r\n")
        except (serial.SerialException, OSError) as exc:
            self._port_lost(exc)

    def _frame(self, frame: FrameHeard) -> None:
        now = self.clock()
        reception = Reception(gateway_eui=self.gateway_id, tmst=host_tmst(), freq=self.radio.frequency_hz,
                              sf=self.radio.sf, bw=self.radio.bw_khz * 1000, rssi=frame.rssi, snr=frame.snr,
                              time=iso_utc(now), can_transmit=False)
        if self.counters is not None:
            self.counters.gateway_seen(self.gateway_id, iso_utc(now))
        try:
            self.on_frame(frame.phy, reception, now)
        except Exception:  # the reader outlives a bug in one frame's handling
            log.exception("rak3172: handling a frame from %s failed", self.gateway_id)

    def _port_lost(self, exc: Exception) -> None:
        log.warning("rak3172: %s: %s", self.port, exc)
        self.core.closed()
        if self._lost is not None:
            self._lost.set()
        if self._wake is not None:
            self._wake.set()
        self._close()

    def _close(self) -> None:
        port, self._serial = self._serial, None
        if port is None:
            return
        with contextlib.suppress(Exception):  # the fd may already be gone with the device
            asyncio.get_running_loop().remove_reader(port.fileno())
        with contextlib.suppress(Exception):
            port.close()
