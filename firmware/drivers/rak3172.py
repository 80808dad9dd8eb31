"""RAK3172 LoRaWAN modem (RUI3 AT commands over a UART) as a LoRaWAN node with the same face as lorawan/node.py:
`send(fport, payload, confirmed)` runs one uplink's whole exchange (joining first if needed) and returns the events of
lorawan/events.py (Joined, JoinFailed, Sent, Downlink, LinkCheck, NotSent, Done), plus now_ms(), sleep_until() and a
`mac` with battery_level, so every app runs unchanged on a board whose radio is the module.

At boot the module is reset (ATZ) and configured from config.json, so a board that rebooted in the middle of an exchange
finds it idle; a module that lost its session (it may have reset itself) is configured again before the next join.
Layers: `AtProtocol` is the sans-IO core (commands out as bytes; lines in, replies and events out); `Rak3172` is the
edge that writes to and reads lines from the UART (machine.UART with a timeout), waiting for a command's status line and
for `+EVT:` lines; `ModemNode` turns those into the node's events (its settings, its join and a refused send:
drivers/rak3172_join.py, loaded for those).

The module keeps the LoRaWAN MAC: its DevNonce, FCntUp, channels, RX windows, ADR and MAC commands. What it does not
tell over AT the events carry as -1 (DevNonce of Joined/JoinFailed, FCntDown of Downlink) or 0 (Sent.freq_khz: the
channel); Sent.fcnt counts this session's uplinks (= FCntUp after an OTAA join, which the node does at every boot). Keys
go only to the module and are never printed. A silent or garbled module raises ModemError (an OSError), like a radio
fault.
"""
import time

from micropython import const

from drivers.lora_airtime import time_on_air_us
from lorawan.events import Done, Downlink, LinkCheck, Sent
from modules import unload

STATUSES = ("OK", "AT_ERROR", "AT_PARAM_ERROR", "AT_BUSY_ERROR", "AT_TEST_PARAM_OVERFLOW", "AT_NO_NETWORK_JOINED",
            "AT_RX_ERROR", "AT_MODE_NO_SUPPORT", "AT_COMMAND_NOT_FOUND")
EVENT = "+EVT:"
_UNKNOWN = const(-1)  # what the module does not report (DevNonce, FCntDown)
_COMMAND_TIMEOUT_MS = const(2000)  # a status line comes at once; this much silence means the module is gone
_RESET_TRIES = const(3)  # AT probes after ATZ (each waits _COMMAND_TIMEOUT_MS) while the module boots
_EXCHANGE_TIMEOUT_MS = const(60000)  # a confirmed uplink with its retries
# EU868 data rate -> spreading factor; every DR is 125 kHz wide but DR6 (SF7 at 250 kHz)
SPREADING_FACTORS = b"\x0c\x0b\x0a\x09\x08\x07\x07"
_WIDE_DR = const(6)
_LORAWAN_OVERHEAD = const(13)  # MHDR, FHDR without FOpts, FPort, MIC


class ModemError(OSError):
    """The module refused a command (`status` is its AT status) or did not answer (`status` "timeout")."""

    def __init__(self, status, command=""):
        super().__init__("RAK3172 %s%s" % (status, (" on AT+" + command) if command else ""))
        self.status = status


class Reply:
    """A command's answer: its value lines and its status line."""

    def __init__(self, status, values):
        self.status, self.values = status, values


class AtProtocol:
    """Sans-IO AT core: `command()` gives the bytes of a command line; `feed(line)` takes one received line and returns
    a Reply (the status line that ends the command), an event text (what follows "+EVT:") or None (a value line,
    kept for the Reply, or noise such as a boot banner)."""

    def __init__(self):
        self.pending = None
        self._values = []

    def command(self, name, value=None, read=False):
        """The line for AT+NAME (run), AT+NAME=? (read) or AT+NAME=value (write); name "" is the bare AT."""
        self.pending = name
        self._values = []
        if not name:
            return b"AT\r\n"
        if read:
            return ("AT+%s=?\r\n" % name).encode()
        if value is None:
            return ("AT+%s\r\n" % name).encode()
        return ("AT+%s=%s\r\n" % (name, value)).encode()

    def feed(self, line):
        text = line.decode().strip() if isinstance(line, (bytes, bytearray)) else line.strip()
        if not text:
            return None
        if text.startswith(EVENT):
            return text[len(EVENT):]
        if self.pending is None:
            return None  # nothing asked: a banner or a stray line
        if text in STATUSES:
            reply = Reply(text, self._values)
            self.pending, self._values = None, []
            return reply
        self._values.append(text)
        return None


def parse_event(text):
    """The node event an +EVT text means, as (name, event or None): ("joined", None), ("join_failed", None),
    ("done", acked: None/True/False), ("downlink", Downlink), ("linkcheck", LinkCheck), or ("other", None).
    ValueError for a malformed downlink or link check line."""
    if text == "JOINED":
        return "joined", None
    if text.startswith("JOIN_FAILED"):
        return "join_failed", None
    if text == "TX_DONE":
        return "done", None
    if text.startswith("SEND_CONFIRMED_OK"):
        return "done", True
    if text.startswith("SEND_CONFIRMED_FAILED"):
        return "done", False
    if text.startswith("RX_1:") or text.startswith("RX_2:"):
        parts = text.split(":")  # RX_n, rssi, snr, UNICAST, port, hex
        if len(parts) != 6:
            raise ValueError("downlink event with %d fields" % len(parts))
        payload = bytes.fromhex(parts[5])
        return "downlink", Downlink(int(parts[4]), payload, _UNKNOWN, int(parts[0][3]), int(parts[1]), int(parts[2]))
    if text.startswith("LINKCHECK:"):
        parts = text.split(":")  # LINKCHECK, status, margin, gateways, rssi, snr
        if len(parts) != 6:
            raise ValueError("link check event with %d fields" % len(parts))
        return "linkcheck", LinkCheck(int(parts[2]), int(parts[3]))
    return "other", None


class Rak3172:
    """The module on `uart` (machine.UART opened with a timeout): commands with their replies, and its events."""

    def __init__(self, uart):
        self.uart = uart
        self.protocol = AtProtocol()
        self.events = []  # event texts not consumed yet
        self.counters = {}
        self._partial = b""

    def count(self, name):
        self.counters[name] = self.counters.get(name, 0) + 1

    def _line(self):
        """One complete line from the UART, or None when none came within the UART's timeout."""
        data = self.uart.readline()
        if not data:
            return None
        data = self._partial + data
        if not data.endswith(b"\n"):
            self._partial = data
            return None
        self._partial = b""
        return data

    def _take(self, line):
        """Feed a line to the protocol; events are queued, a Reply is returned."""
        try:
            item = self.protocol.feed(line)
        except UnicodeError:
            self.count("garbled_line")
            return None
        if isinstance(item, str):
            self.events.append(item)
            return None
        return item

    def _drain(self):
        """Take in what the module sent unasked before a command: its events are queued; anything else (the late
        answer to a command whose board was interrupted, a banner) is dropped, so it cannot pass for this
        command's answer."""
        self.protocol.pending = None
        while self.uart.any():
            line = self._line()
            if line is not None:
                self._take(line)

    def at(self, name, value=None, read=False, timeout_ms=_COMMAND_TIMEOUT_MS):
        """Run one command; returns its value line (read) or None. ModemError on a refusal or silence."""
        self._drain()
        self.uart.write(self.protocol.command(name, value, read))
        start = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), start) < timeout_ms:
            line = self._line()
            reply = None if line is None else self._take(line)
            if reply is not None:
                if reply.status != "OK":
                    raise ModemError(reply.status, name)
                return reply.values[-1] if read and reply.values else None
        self.protocol.pending = None
        raise ModemError("timeout", name)

    def reset(self):
        """ATZ: reboot the module (an exchange it was busy with ends; its settings are to be written again), then
        wait until it answers AT. ModemError("timeout") when it never does."""
        self.uart.write(b"ATZ\r\n")
        for attempt in range(_RESET_TRIES):
            try:
                self.at("")
                break
            except ModemError:
                if attempt == _RESET_TRIES - 1:
                    raise
        self.events = []

    def next_event(self, timeout_ms):
        """The next event text (queued first), or None after timeout_ms without one."""
        start = time.ticks_ms()
        while not self.events:
            if time.ticks_diff(time.ticks_ms(), start) >= timeout_ms:
                return None
            line = self._line()
            if line is not None:
                self._take(line)
        return self.events.pop(0)


class ModemState:
    """What apps read or set on node.mac: battery_level (for DevStatusAns; the module answers that itself, so it is kept
    only for the apps' sake) and activated (a session is up)."""

    def __init__(self, activated):
        self.battery_level, self.activated = 255, activated


class ModemNode:
    """A LoRaWAN node whose MAC runs in a RAK3172: the same send()/now_ms()/sleep_until() as lorawan.node.Node."""

    def __init__(self, modem, settings, otaa, data_rate, adr):
        self.modem, self.settings, self.otaa = modem, settings, otaa
        self.mac = ModemState(False)
        self.data_rate, self.adr = data_rate, adr
        self.configured = False
        self.counters = modem.counters
        self.fcnt_up = 0
        self.next_join_ms = 0
        self.join_attempts = 0
        self._confirmed = False
        self._ticks = time.ticks_ms()
        self._now = 0

    def now_ms(self):
        """Milliseconds since this node started (monotonic; ticks_ms wrap-around handled)."""
        ticks = time.ticks_ms()
        self._now += time.ticks_diff(ticks, self._ticks)
        self._ticks = ticks
        return self._now

    def sleep_until(self, at_ms):
        delay = at_ms - self.now_ms()
        if delay > 0:
            time.sleep_ms(delay)

    def _next_event(self, timeout_ms, what):
        """(name, event) of the module's next event (see parse_event); a malformed one is counted and skipped.
        ModemError("timeout") after timeout_ms without one."""
        while True:
            text = self.modem.next_event(timeout_ms)
            if text is None:
                raise ModemError("timeout", what)
            try:
                return parse_event(text)
            except ValueError:
                self.modem.count("malformed_event")

    def send(self, fport, payload, confirmed=False):
        """Send `payload` on `fport` and wait for the exchange's end (join first if needed); returns the events.
        A module that stops answering raises ModemError."""
        events = []
        if not (self.configured and self.mac.activated):  # set up and join first (drivers/rak3172_join.py)
            from drivers.rak3172_join import start_session

            events = start_session(self)
            del start_session  # the last reference to the module's code
            unload("drivers.rak3172_join")
            if not self.mac.activated:
                return events
        modem = self.modem
        try:
            if confirmed != self._confirmed:
                modem.at("CFM", "1" if confirmed else "0")
                self._confirmed = confirmed
            modem.events = []
            modem.at("SEND", "%d:%s" % (fport, bytes(payload).hex()))
        except ModemError as exc:  # a refusal that means the uplink was not sent (drivers/rak3172_join.py)
            from drivers.rak3172_join import not_sent

            refused = not_sent(self, exc.status, len(payload))
            del not_sent  # the last reference to the module's code
            unload("drivers.rak3172_join")
            if refused is None:
                raise
            return events + [refused]
        fcnt = self.fcnt_up
        self.fcnt_up += 1
        sf, bw_khz = SPREADING_FACTORS[self.data_rate], 250 if self.data_rate == _WIDE_DR else 125
        events.append(Sent(fcnt, fport, 0, self.data_rate,
                           time_on_air_us(len(payload) + _LORAWAN_OVERHEAD, sf, bw_khz), 1))
        while True:
            name, event = self._next_event(_EXCHANGE_TIMEOUT_MS, "SEND (no end of exchange)")
            if name in ("downlink", "linkcheck"):
                events.append(event)
            elif name == "done":
                events.append(Done(fcnt, event if confirmed else None))
                break
        if self.adr:
            self.data_rate = int(modem.at("DR", read=True))
        return events


def node_from_config(config, make_uart):
    """The ModemNode config.json describes, on make_uart(options) (drivers/rak3172_config.py: its code runs only while
    the node starts, so it is loaded for that and forgotten after; ConfigError for a bad config, ModemError when the
    module does not answer)."""
    from drivers.rak3172_config import node_from_config as build

    try:
        return build(config, make_uart)
    finally:  # after the build: make_uart (the board's lorawan_modem) opens the UART with its open_uart
        unload("drivers.rak3172_config")
