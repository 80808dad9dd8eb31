"""A RAK3172 LoRa module (RUI3 firmware) emulated at its AT command interface, on the rig's air and in its virtual time
(reference/rak3172.md).

The host writes command lines (`receive(bytes)`, lines end with CR and/or LF); the module answers on `output` at once:
an optional value line, then a status line (OK, AT_ERROR, AT_PARAM_ERROR, AT_BUSY_ERROR, AT_NO_NETWORK_JOINED,
AT_MODE_NO_SUPPORT, AT_COMMAND_NOT_FOUND); `AT+X?` gives a help line. What happens later comes as `+EVT:` lines.

LoRaWAN mode (AT+NWM=1, EU868 only): a Class A end device. OTAA (AT+NJM=1: AT+DEVEUI, AT+APPEUI, AT+APPKEY; AT+JOIN
sends a JoinRequest on 868.1/868.3/868.5 MHz, opens the join windows 5 s and 6 s after it, then +EVT:JOINED or, after
the last attempt, +EVT:JOIN_FAILED_RX_TIMEOUT) or ABP (AT+NJM=0: AT+DEVADDR, AT+NWKSKEY, AT+APPSKEY; no join).
AT+SEND=port:hex sends an uplink (confirmed when AT+CFM=1, retried AT+RETY times without an ACK) with FCnt counting up
per new uplink, opens RX1 (RX1 delay, same channel, DR - RX1DROffset) and RX2 (one second later, 869.525 MHz at the RX2
DR), and reports +EVT:RX_1|RX_2:<rssi>:<snr>:UNICAST:<port>:<hex> for application data, then +EVT:TX_DONE (unconfirmed)
or +EVT:SEND_CONFIRMED_OK / +EVT:SEND_CONFIRMED_FAILED. Frames, MICs and keys come from dos_codecs; the network's MAC
commands are answered in the next uplink's FOpts (LinkADRReq with AT+ADR=1, RXParamSetupReq, RXTimingSetupReq,
NewChannelReq, DevStatusReq, DutyCycleReq; LinkCheckAns becomes +EVT:LINKCHECK). Not emulated: duty-cycle limits,
NbTrans > 1, ADRACKReq, Class B/C.

P2P mode (AT+NWM=0): AT+P2P=freq:sf:bw:cr:preamble:txp (bw index 0/1/2 = 125/250/500 kHz, cr 0..3 = 4/5..4/8),
AT+SYNCWORD (hex, 3444 = the public LoRaWAN 0x34, 1424 = private 0x12), AT+IQINVER, AT+PSEND=hex (+EVT:TXP2P DONE),
AT+PRECV=ms (65534 continuous, 65535 one packet, 0 stop, else a window ending in +EVT:RXP2P RECEIVE TIMEOUT); every
frame heard intact becomes +EVT:RXP2P:<rssi>:<snr>:<HEX>. With sync word 3444 and normal IQ on an uplink channel and SF
it is a single-channel LoRaWAN receiver.

ATZ (or `reset()`, a power cut) reboots the module: every setting back to its factory value, no session, no receive
mode, a boot banner; only the DevNonce counter survives (RUI3 keeps it in flash), so a host must configure it again. Bad
input never raises: an unknown command, a bad value or a line too long gets its status line and is counted.
"""
from __future__ import annotations

import errno
import logging
import os
import random
import tty
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dos_agent import eu868
from dos_agent.session import next_fcnt
from dos_codecs.crypto import SessionKeys, derive_session_keys, open_join_accept, seal_join_request
from dos_codecs.errors import FrameError
from dos_codecs.lorawan import MAX_FOPTS_LEN, DataFrame, JoinRequest, MType, parse_data_frame
from dos_codecs.mac_commands import (DevStatusAns, DevStatusReq, DlChannelAns, DlChannelReq, DutyCycleAns, DutyCycleReq,
                                     LinkADRAns, LinkADRReq, LinkCheckAns, LinkCheckReq, MacCommand, NewChannelAns,
                                     NewChannelReq, RXParamSetupAns, RXParamSetupReq, RXTimingSetupAns,
                                     RXTimingSetupReq, build_mac_commands, commands_size, parse_cf_list,
                                     parse_mac_commands_prefix)
from dos_codecs.rak3172 import (AT_BUSY_ERROR, AT_COMMAND_NOT_FOUND, AT_ERROR, AT_MODE_NO_SUPPORT,
                                AT_NO_NETWORK_JOINED, AT_PARAM_ERROR, BAUDRATE, MAX_LINE, OK, P2P_BANDWIDTHS_KHZ,
                                PRECV_CONTINUOUS, PRECV_ONE_PACKET, RX_P2P_TIMEOUT_EVENT, TX_P2P_DONE_EVENT, banner,
                                event_line, format_rx_p2p)

from dos_rig.air import Air, Modulation, Reception, Transmission, modulation_matches
from dos_rig.airtime import needs_low_data_rate_optimize, symbol_time_us
from dos_rig.clock import Timer, VirtualClock

log = logging.getLogger("dos_rig.rak3172")

VERSION = "RUI_4.0.6_RAK3172-E (DOS Edge rig emulator)"
LORAWAN_SYNC_WORD = 0x34
DEFAULT_CHANNELS_HZ = (868_100_000, 868_300_000, 868_500_000)
MAX_CHANNELS = 16
WINDOW_EARLY_US = 2_000  # an RX window opens this much before its instant ...
WINDOW_SYMBOLS = 8  # ... and waits this many symbols for a preamble
RETRY_BACKOFF_US = (1_000_000, 3_000_000)  # confirmed uplink retry after 1..3 s


class CommandError(Exception):
    """A command refused with an AT status (AT_PARAM_ERROR, AT_BUSY_ERROR, ...)."""

    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


def tx_power_dbm(index: int) -> float:
    """EU868 TX power index -> EIRP: 16 dBm (max EIRP) minus 2 dB per step."""
    return 16.0 - 2.0 * index


@dataclass
class Settings:
    """What AT commands configure; ATZ brings back these factory values."""

    work_mode: int = 1  # AT+NWM: 0 P2P, 1 LoRaWAN
    band: int = 4  # EU868
    join_mode: int = 1  # AT+NJM: 0 ABP, 1 OTAA
    dev_eui: bytes = bytes(8)
    app_eui: bytes = bytes(8)
    app_key: bytes = field(default=bytes(16), repr=False)
    dev_addr: int = 0
    nwk_s_key: bytes = field(default=bytes(16), repr=False)
    app_s_key: bytes = field(default=bytes(16), repr=False)
    confirmed: int = 0
    retries: int = 0
    adr: int = 0
    data_rate: int = 0
    tx_power: int = 0
    link_check: int = 0
    p2p: tuple[int, int, int, int, int, int] = (868_000_000, 7, 0, 0, 8, 14)  # freq:sf:bw:cr:preamble:txp
    sync_word: int = 0x1424
    iq_inverted: int = 0


@dataclass
class Session:
    """An active LoRaWAN session (after a join, or ABP)."""

    dev_addr: int
    keys: SessionKeys = field(repr=False)
    fcnt_up: int = 0  # the next new uplink's counter
    fcnt_down: int | None = None  # the last accepted downlink's
    rx1_delay_s: int = 1
    rx1_dr_offset: int = 0
    rx2_dr: int = eu868.RX2_DR
    rx2_frequency_hz: int = eu868.RX2_FREQUENCY_HZ
    channels: list = field(default_factory=lambda: list(DEFAULT_CHANNELS_HZ) + [0] * (MAX_CHANNELS - 3))
    channel_mask: int = 0b111
    ack_next: bool = False  # a confirmed downlink came: the next uplink carries ACK
    mac_answers: list = field(default_factory=list)


@dataclass
class Exchange:
    """One uplink or join in flight: the frame, its tries, and what its receive windows brought."""

    kind: str  # "join" or "uplink"
    phy: bytes
    freq_hz: int
    dr: int
    confirmed: bool = False
    tries: int = 1
    max_tries: int = 1
    window: int = 0  # the receive window open now (1, 2), 0 while transmitting or waiting
    answered: int = 0  # the try whose RX1 brought the answer (no RX2 for it)
    rx2_open_us: int = 0  # when this try's RX2 opens
    dev_nonce: int = 0
    acked: bool = False
    retry_period_us: int = 0


class Rak3172:
    """One module: its AT interface (`receive`, `output`), its radio on the air (a `Receiver`), its timers."""

    def __init__(self, module_id: str, clock: VirtualClock, air: Air, position: tuple = (0.0, 0.0),
                 output: Callable[[bytes], None] | None = None):
        self.receiver_id = module_id
        self.clock, self.air = clock, air
        self.position = tuple(position)
        self.output = output or (lambda data: None)
        self.baudrate = BAUDRATE
        self.factory_dev_eui = bytes.fromhex("AC1F09FFFE") + bytes.fromhex(
            "%06x" % (int.from_bytes(module_id.encode(), "big") & 0xFFFFFF))
        self.dev_nonce = 0  # kept in the module's flash: survives ATZ
        self.abp_fcnt_up = 0  # likewise the ABP uplink counter: a rebooted host never makes it reuse one
        self.counters: dict[str, int] = {}
        self.transmitted: list[Transmission] = []
        self.resets = 0
        self._random = random.Random(module_id)
        self._timers: list[Timer] = []
        self._tx: Transmission | None = None
        self._listen: Modulation | None = None
        self._receiving: Reception | None = None
        self._line = bytearray()
        self._overlong = False
        self._power_on()
        air.attach(self)

    # --- lifecycle ----------------------------------------------------------------------------------------------------
    def _power_on(self) -> None:
        self.settings = Settings(dev_eui=self.factory_dev_eui)
        self.session: Session | None = None
        self.exchange: Exchange | None = None
        self.last_downlink: tuple[int, bytes] = (0, b"")
        self.last_rssi_snr: tuple[int, int] = (0, 0)
        self._precv: int = 0  # P2P receive mode: 0 off, else the AT+PRECV value in force
        self._line.clear()
        self._overlong = False

    def reset(self) -> None:
        """Reboot (ATZ, the reset pin or a power cut): activity stops, settings go back to factory values, a banner."""
        self._stop_activity()
        self._power_on()
        self.resets += 1
        mode = "LoRaWAN" if self.settings.work_mode else "LoRa P2P"
        self._write(banner(VERSION, mode))

    def _stop_activity(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._tx is not None and self.clock.now_us < self._tx.end_us:
            self.air.abort(self._tx)
        self._tx = None
        self._listen = None
        self._receiving = None
        self.exchange = None
        self._precv = 0

    def _at(self, t_us: int, callback: Callable, *args) -> None:
        self._timers = [t for t in self._timers if not t.cancelled and t.t_us >= self.clock.now_us]
        self._timers.append(self.clock.call_at(t_us, callback, *args))

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    # --- the serial side ----------------------------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        self.output(text.encode())

    def _event(self, text: str) -> None:
        self._write(event_line(text))

    def receive(self, data: bytes) -> None:
        """Bytes from the host's UART: every complete line is a command."""
        for byte in data:
            if byte in (0x0D, 0x0A):
                line, overlong = bytes(self._line), self._overlong
                self._line.clear()
                self._overlong = False
                if overlong:
                    self._count("line_too_long")
                    self._write(AT_PARAM_ERROR + "\r\n")
                elif line.strip():
                    self._command_line(line)
            elif len(self._line) >= MAX_LINE:
                self._overlong = True
            else:
                self._line.append(byte)

    def _command_line(self, raw: bytes) -> None:
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            self._count("not_ascii")
            self._write(AT_ERROR + "\r\n")
            return
        upper = line.upper()
        if upper == "AT":
            self._write(OK + "\r\n")
            return
        if upper == "ATZ":
            self.reset()
            return
        if not upper.startswith("AT+"):
            self._count("not_a_command")
            self._write(AT_ERROR + "\r\n")
            return
        body = line[3:]
        name, sep, arg = body.partition("=")
        name = name.upper()
        if not sep and name.endswith("?"):
            name, form = name[:-1], "help"
        elif sep and arg == "?":
            form = "read"
        elif sep:
            form = "write"
        else:
            form = "run"
        handler = COMMANDS.get(name)
        if handler is None:
            self._count("unknown_command")
            self._write(AT_COMMAND_NOT_FOUND + "\r\n")
            return
        if form == "help":
            self._write(f"AT+{name}: {handler.__doc__.strip()}\r\n{OK}\r\n")
            return
        try:
            value = handler(self, form, arg)
        except CommandError as exc:
            self._count(exc.status.lower())
            self._write(exc.status + "\r\n")
            return
        except ValueError:
            self._count("at_param_error")
            self._write(AT_PARAM_ERROR + "\r\n")
            return
        self._write((f"{value}\r\n" if value is not None else "") + OK + "\r\n")

    # --- helpers for the command handlers -----------------------------------------------------------------------------
    def _need_mode(self, work_mode: int) -> None:
        if self.settings.work_mode != work_mode:
            raise CommandError(AT_MODE_NO_SUPPORT)

    def _need_idle(self) -> None:
        if self.exchange is not None or self._tx is not None:
            raise CommandError(AT_BUSY_ERROR)

    # --- the radio on the air -----------------------------------------------------------------------------------------
    def _transmit(self, mod: Modulation, phy: bytes, power_dbm: float, done: Callable[[], None]) -> Transmission:
        self._listen = None
        self._receiving = None
        tx = self.air.transmit(self.receiver_id, self.position, mod, phy, power_dbm)
        self.transmitted.append(tx)
        self._tx = tx

        def tx_done() -> None:
            self._tx = None
            done()

        self._at(tx.end_us, tx_done)
        return tx

    def hears(self, tx: Transmission) -> Modulation | None:
        listening = self._listen
        if listening is None or self._receiving is not None or self._tx is not None:
            return None
        return listening if modulation_matches(listening, tx.mod, self.air.freq_tolerance_hz) else None

    def begin_reception(self, rx: Reception) -> None:
        self._receiving = rx

    def still_receiving(self, rx: Reception) -> bool:
        return self._receiving is rx

    def end_reception(self, rx: Reception) -> None:
        self._receiving = None
        if not rx.delivered:  # a CRC error: the radio drops it
            self._count("rx_crc_error")
            return
        rssi, snr = round(rx.rssi), round(rx.snr)
        self.last_rssi_snr = (rssi, snr)
        if self.settings.work_mode == 0:
            self._p2p_received(rx.phy, rssi, snr)
        else:
            self._lorawan_received(rx.phy, rssi, snr)

    # --- LoRaWAN ------------------------------------------------------------------------------------------------------
    def _modulation(self, freq_hz: int, dr: int, downlink: bool) -> Modulation:
        sf, bw_hz = eu868.DATA_RATES[dr]
        return Modulation(freq_hz=freq_hz, sf=sf, bw_hz=bw_hz, sync_word=LORAWAN_SYNC_WORD, iq_inverted=downlink,
                          cr=1, crc=not downlink, preamble=8, ldro=needs_low_data_rate_optimize(sf, bw_hz))

    def joined(self) -> bool:
        return self.session is not None

    def _abp_session(self) -> None:
        s = self.settings
        self.session = Session(s.dev_addr, SessionKeys(s.nwk_s_key, s.app_s_key), fcnt_up=self.abp_fcnt_up)

    def _pick_channel(self, mask: int, channels) -> int:
        enabled = [hz for i, hz in enumerate(channels) if hz and mask >> i & 1]
        return self._random.choice(enabled)

    def start_join(self, attempts: int, period_s: int) -> None:
        self.exchange = None
        self._join_attempt(1, max(1, attempts), period_s)

    def _join_attempt(self, attempt: int, attempts: int, period_s: int) -> None:
        s = self.settings
        request = JoinRequest(join_eui=s.app_eui, dev_eui=s.dev_eui, dev_nonce=self.dev_nonce)
        self.dev_nonce += 1
        phy = seal_join_request(request, s.app_key)
        freq = self._pick_channel(0b111, DEFAULT_CHANNELS_HZ)
        exchange = Exchange("join", phy, freq, s.data_rate, tries=attempt, max_tries=attempts,
                            dev_nonce=request.dev_nonce, retry_period_us=period_s * 1_000_000)
        self._send_exchange(exchange)

    def _send_exchange(self, exchange: Exchange) -> None:
        self.exchange = exchange
        exchange.window = 0
        power = tx_power_dbm(self.settings.tx_power)
        self._transmit(self._modulation(exchange.freq_hz, exchange.dr, False), exchange.phy, power,
                       lambda: self._uplink_ended(exchange))

    def _uplink_ended(self, exchange: Exchange) -> None:
        end = self.clock.now_us
        session = self.session
        if exchange.kind == "join":
            rx1_delay_us, rx1_dr, rx2_dr = eu868.JOIN_ACCEPT_DELAY1_S * 1_000_000, exchange.dr, eu868.RX2_DR
            rx2_freq = eu868.RX2_FREQUENCY_HZ
        else:
            rx1_delay_us = session.rx1_delay_s * 1_000_000
            rx1_dr = eu868.rx1_data_rate(exchange.dr, session.rx1_dr_offset)
            rx2_dr, rx2_freq = session.rx2_dr, session.rx2_frequency_hz
        rx1_at = end + rx1_delay_us
        tries = exchange.tries
        exchange.rx2_open_us = rx1_at + 1_000_000 - WINDOW_EARLY_US
        self._at(rx1_at - WINDOW_EARLY_US, self._open_window, exchange, tries, 1, exchange.freq_hz, rx1_dr)
        self._at(rx1_at + 1_000_000 - WINDOW_EARLY_US, self._open_window, exchange, tries, 2, rx2_freq, rx2_dr)

    def _current(self, exchange: Exchange, tries: int) -> bool:
        """Whether a timer of this try still matters (the exchange neither ended, nor moved on, nor got its answer)."""
        return self.exchange is exchange and exchange.tries == tries and exchange.answered != tries

    def _open_window(self, exchange: Exchange, tries: int, window: int, freq_hz: int, dr: int) -> None:
        if not self._current(exchange, tries) or self._receiving is not None:
            return  # over, or a long frame heard in RX1 is still arriving: its end decides (one radio, one window)
        exchange.window = window
        mod = self._modulation(freq_hz, dr, True)
        self._listen = mod
        timeout = WINDOW_EARLY_US + round(WINDOW_SYMBOLS * symbol_time_us(mod.sf, mod.bw_hz))
        self._at(self.clock.now_us + timeout, self._window_timeout, exchange, tries, window)

    def _window_timeout(self, exchange: Exchange, tries: int, window: int) -> None:
        if not self._current(exchange, tries) or exchange.window != window or self._receiving is not None:
            return  # over, or a reception started in the window: it runs to its end
        self._listen = None
        if window == 2:
            self._exchange_over(exchange)

    def _lorawan_received(self, phy: bytes, rssi: int, snr: int) -> None:
        exchange = self.exchange
        self._listen = None
        if exchange is None or exchange.window <= 0:
            return
        window = exchange.window
        accepted = self._join_accept(exchange, phy) if exchange.kind == "join" else self._downlink(exchange, phy,
                                                                                                      window, rssi, snr)
        exchange.window = 0
        if accepted:
            exchange.answered = exchange.tries  # no RX2 after an answer in RX1
            self._exchange_over(exchange)
        elif window == 2 or self.clock.now_us >= exchange.rx2_open_us:  # nothing for us, and no window left
            self._exchange_over(exchange)

    def _join_accept(self, exchange: Exchange, phy: bytes) -> bool:
        if not phy or phy[0] >> 5 != MType.JOIN_ACCEPT:
            self._count("rx_not_join_accept")
            return False
        try:
            accept = open_join_accept(phy, self.settings.app_key)
        except FrameError as exc:
            self._count(f"rx_{exc.reason}")
            return False
        nwk_s_key, app_s_key = derive_session_keys(self.settings.app_key, accept.join_nonce, accept.net_id,
                                                   exchange.dev_nonce)
        session = Session(accept.dev_addr, SessionKeys(nwk_s_key, app_s_key), rx1_delay_s=accept.rx_delay or 1,
                          rx1_dr_offset=accept.rx1_dr_offset, rx2_dr=accept.rx2_data_rate)
        if accept.cf_list is not None:
            try:
                extra = parse_cf_list(accept.cf_list)
            except FrameError:
                extra = []
            for index, hz in enumerate(extra, start=3):
                session.channels[index] = hz
                if hz:
                    session.channel_mask |= 1 << index
        self.session = session
        self.settings.dev_addr = accept.dev_addr
        exchange.acked = True
        return True

    def _downlink(self, exchange: Exchange, phy: bytes, window: int, rssi: int, snr: int) -> bool:
        session = self.session
        try:
            frame = parse_data_frame(phy)
        except FrameError as exc:
            self._count(f"rx_{exc.reason}")
            return False
        if frame.uplink or frame.dev_addr != session.dev_addr:
            self._count("rx_not_for_me")
            return False
        fcnt32 = next_fcnt(session.fcnt_down, frame.fcnt16)
        if fcnt32 is None:
            self._count("rx_fcnt_replay")
            return False
        try:
            plaintext = session.keys.open(frame, fcnt32)
        except FrameError as exc:
            self._count(f"rx_{exc.reason}")
            return False
        session.fcnt_down = fcnt32
        session.ack_next = frame.confirmed
        if frame.ack and exchange.confirmed:
            exchange.acked = True
        commands = plaintext if frame.fport == 0 else frame.fopts
        self._mac_commands(commands, snr)
        if frame.fport:
            self.last_downlink = (frame.fport, plaintext)
            self._event(f"RX_{window}:{rssi}:{snr}:UNICAST:{frame.fport}:{plaintext.hex().upper()}")
        return True

    def _mac_commands(self, data: bytes, snr: int) -> None:
        commands, error = parse_mac_commands_prefix(data, uplink=False)
        if error is not None:
            self._count(f"mac_{error.reason}")
        session, answers = self.session, []
        for command in commands:
            answer = self._mac_answer(session, command, snr)
            if answer is not None:
                answers.append(answer)
        session.mac_answers = answers

    def _mac_answer(self, session: Session, command: MacCommand, snr: int) -> MacCommand | None:
        s = self.settings
        if isinstance(command, LinkADRReq):
            mask = (session.channel_mask if command.ch_mask_cntl not in (0, 6)
                    else command.ch_mask if command.ch_mask_cntl == 0
                    else sum(1 << i for i, hz in enumerate(session.channels) if hz))
            mask_ok = any(hz and mask >> i & 1 for i, hz in enumerate(session.channels)) and \
                command.ch_mask_cntl in (0, 6)
            dr_ok = bool(s.adr) and (command.data_rate == 15 or command.data_rate in eu868.DATA_RATES)
            power_ok = command.tx_power == 15 or command.tx_power <= 7
            if mask_ok and dr_ok and power_ok:
                session.channel_mask = mask
                if command.data_rate != 15:
                    s.data_rate = command.data_rate
                if command.tx_power != 15:
                    s.tx_power = command.tx_power
            return LinkADRAns(power_ack=power_ok, data_rate_ack=dr_ok, channel_mask_ack=mask_ok)
        if isinstance(command, RXParamSetupReq):
            ok = command.rx2_data_rate in eu868.DATA_RATES and command.rx1_dr_offset <= 5
            if ok:
                session.rx1_dr_offset, session.rx2_dr = command.rx1_dr_offset, command.rx2_data_rate
                session.rx2_frequency_hz = command.frequency_hz
            return RXParamSetupAns(rx1_dr_offset_ack=ok, rx2_data_rate_ack=ok, channel_ack=ok)
        if isinstance(command, RXTimingSetupReq):
            session.rx1_delay_s = command.delay or 1
            return RXTimingSetupAns()
        if isinstance(command, NewChannelReq):
            ok = 3 <= command.ch_index < MAX_CHANNELS
            if ok:
                session.channels[command.ch_index] = command.frequency_hz
                if command.frequency_hz:
                    session.channel_mask |= 1 << command.ch_index
                else:
                    session.channel_mask &= ~(1 << command.ch_index)
            return NewChannelAns(data_rate_range_ok=ok, channel_frequency_ok=ok)
        if isinstance(command, DlChannelReq):
            return DlChannelAns(uplink_frequency_exists=False, channel_frequency_ok=False)
        if isinstance(command, DevStatusReq):
            return DevStatusAns(battery=0, margin=max(-32, min(31, snr)))  # 0: on external power
        if isinstance(command, DutyCycleReq):
            return DutyCycleAns()
        if isinstance(command, LinkCheckAns):
            rssi, last_snr = self.last_rssi_snr
            self._event(f"LINKCHECK:0:{command.margin}:{command.gw_count}:{rssi}:{last_snr}")
        return None

    def _exchange_over(self, exchange: Exchange) -> None:
        self._listen = None
        if exchange.kind == "join":
            if exchange.acked:
                self.exchange = None
                self._event("JOINED")
            elif exchange.tries < exchange.max_tries:  # busy (self.exchange stays) until the next attempt
                self._at(self.clock.now_us + exchange.retry_period_us, self._join_attempt, exchange.tries + 1,
                         exchange.max_tries, exchange.retry_period_us // 1_000_000)
            else:
                self.exchange = None
                self._event("JOIN_FAILED_RX_TIMEOUT")
            return
        if exchange.confirmed and not exchange.acked and exchange.tries < exchange.max_tries:
            exchange.tries += 1
            exchange.window = 0
            self._at(self.clock.now_us + self._random.randint(*RETRY_BACKOFF_US), self._retry, exchange)
            return
        self.exchange = None
        if exchange.confirmed:
            self._event("SEND_CONFIRMED_OK" if exchange.acked else "SEND_CONFIRMED_FAILED")
        else:
            self._event("TX_DONE")

    def _retry(self, exchange: Exchange) -> None:
        if self.exchange is exchange:
            self._count("confirmed_retries")
            self._send_exchange(exchange)

    def send_uplink(self, fport: int, payload: bytes) -> None:
        s, session = self.settings, self.session
        fopts_commands = list(session.mac_answers)
        if s.link_check:
            fopts_commands.append(LinkCheckReq())
            if s.link_check == 1:
                s.link_check = 0
        if len(payload) + commands_size(fopts_commands) > eu868.MAX_PAYLOAD[s.data_rate]:
            raise CommandError(AT_PARAM_ERROR)
        fopts = build_mac_commands(fopts_commands) if commands_size(fopts_commands) <= MAX_FOPTS_LEN else b""
        session.mac_answers = []
        confirmed = bool(s.confirmed)
        fcnt = session.fcnt_up
        session.fcnt_up += 1
        if s.join_mode == 0:
            self.abp_fcnt_up = session.fcnt_up
        frame = DataFrame(mtype=MType.CONFIRMED_UP if confirmed else MType.UNCONFIRMED_UP, dev_addr=session.dev_addr,
                          fcnt16=fcnt & 0xFFFF, adr=bool(s.adr), ack=session.ack_next, fopts=fopts, fport=fport,
                          frm_payload=payload)
        session.ack_next = False
        phy = session.keys.seal(frame, fcnt)
        freq = self._pick_channel(session.channel_mask, session.channels)
        self._send_exchange(Exchange("uplink", phy, freq, s.data_rate, confirmed=confirmed,
                                     max_tries=1 + (s.retries if confirmed else 0)))

    # --- P2P ----------------------------------------------------------------------------------------------------------
    def p2p_modulation(self) -> Modulation:
        freq, sf, bw, cr, preamble, _txp = self.settings.p2p
        bw_hz = P2P_BANDWIDTHS_KHZ[bw] * 1000
        sync = self.settings.sync_word
        return Modulation(freq_hz=freq, sf=sf, bw_hz=bw_hz, sync_word=((sync >> 8) & 0xF0) | ((sync >> 4) & 0x0F),
                          iq_inverted=bool(self.settings.iq_inverted), cr=cr + 1, crc=True, preamble=preamble,
                          ldro=needs_low_data_rate_optimize(sf, bw_hz))

    def start_p2p_receive(self, value: int) -> None:
        self._precv = value
        self._listen = self.p2p_modulation() if value else None
        if value and value not in (PRECV_CONTINUOUS, PRECV_ONE_PACKET):
            self._at(self.clock.now_us + value * 1000, self._p2p_timeout, self._listen)

    def _p2p_timeout(self, listening: Modulation) -> None:
        if self._listen is listening and self._receiving is None:
            self._listen = None
            self._precv = 0
            self._event(RX_P2P_TIMEOUT_EVENT)

    def _p2p_received(self, phy: bytes, rssi: int, snr: int) -> None:
        self._event(format_rx_p2p(rssi, snr, phy))
        if self._precv != PRECV_CONTINUOUS:
            self._listen = None
            self._precv = 0

    def p2p_send(self, payload: bytes) -> None:
        def done() -> None:
            self._event(TX_P2P_DONE_EVENT)

        self._transmit(self.p2p_modulation(), payload, float(self.settings.p2p[5]), done)


# --- AT commands: handler(module, form, argument) -> value line or None; form is "read", "write" or "run" ------------

def _parse_int(text: str, low: int, high: int) -> int:
    if not text.isdigit():
        raise ValueError(text)
    value = int(text)
    if not low <= value <= high:
        raise ValueError(text)
    return value


def _parse_hex(text: str, size: int) -> bytes:
    if len(text) != 2 * size:
        raise ValueError(text)
    return bytes.fromhex(text)


def _only(form: str, *allowed: str) -> None:
    if form not in allowed:
        raise CommandError(AT_PARAM_ERROR)


def _int_setting(name: str, low: int, high: int, doc: str, mode: int | None = None):
    def handler(module: Rak3172, form: str, arg: str) -> str | None:
        _only(form, "read", "write")
        if mode is not None:
            module._need_mode(mode)
        if form == "read":
            return str(getattr(module.settings, name))
        setattr(module.settings, name, _parse_int(arg, low, high))
        return None
    handler.__doc__ = doc
    return handler


def _hex_setting(name: str, size: int, doc: str, readable: bool = True):
    def handler(module: Rak3172, form: str, arg: str) -> str | None:
        _only(form, "read", "write")
        module._need_mode(1)
        if form == "read":
            value = getattr(module.settings, name)
            return (value.to_bytes(4, "big") if isinstance(value, int) else value).hex().upper()
        module._need_idle()
        data = _parse_hex(arg, size)
        setattr(module.settings, name, int.from_bytes(data, "big") if name == "dev_addr" else data)
        if module.settings.join_mode == 0:
            module.session = None  # the ABP session starts again with the new value at the next send
        return None
    handler.__doc__ = doc
    return handler


def _cmd_nwm(module: Rak3172, form: str, arg: str) -> str | None:
    """get or set the work mode (0 = LoRa P2P, 1 = LoRaWAN)"""
    _only(form, "read", "write")
    if form == "read":
        return str(module.settings.work_mode)
    mode = _parse_int(arg, 0, 1)
    if mode != module.settings.work_mode:
        module._stop_activity()
        module.session = None
        module.settings.work_mode = mode
    return None


def _cmd_band(module: Rak3172, form: str, arg: str) -> str | None:
    """get or set the regional band (4 = EU868, the only one emulated)"""
    _only(form, "read", "write")
    module._need_mode(1)
    if form == "read":
        return str(module.settings.band)
    if _parse_int(arg, 0, 12) != 4:
        raise CommandError(AT_PARAM_ERROR)
    return None


def _cmd_njm(module: Rak3172, form: str, arg: str) -> str | None:
    """get or set the network join mode (0 = ABP, 1 = OTAA)"""
    _only(form, "read", "write")
    module._need_mode(1)
    if form == "read":
        return str(module.settings.join_mode)
    module._need_idle()
    module.settings.join_mode = _parse_int(arg, 0, 1)
    module.session = None
    return None


def _cmd_njs(module: Rak3172, form: str, arg: str) -> str | None:
    """get the join status (1 = joined or ABP session ready)"""
    _only(form, "read")
    module._need_mode(1)
    if module.settings.join_mode == 0 and module.session is None:
        module._abp_session()
    return "1" if module.joined() else "0"


def _cmd_join(module: Rak3172, form: str, arg: str) -> str | None:
    """join the network (join:auto:period:attempts; join 1 = start, 0 = stop)"""
    _only(form, "write", "run")
    module._need_mode(1)
    join, period, attempts = 1, 8, 0
    if form == "write":
        parts = arg.split(":")
        if not 1 <= len(parts) <= 4:
            raise ValueError(arg)
        join = _parse_int(parts[0], 0, 1)
        if len(parts) > 1:
            _parse_int(parts[1], 0, 1)  # auto-join at power-up: checked, not emulated
        if len(parts) > 2:
            period = _parse_int(parts[2], 7, 255)
        if len(parts) > 3:
            attempts = _parse_int(parts[3], 0, 255)
    if not join:
        if module.exchange is not None and module.exchange.kind == "join":
            module._stop_activity()
        return None
    if module.settings.join_mode != 1:
        raise CommandError(AT_ERROR)
    module._need_idle()
    module.session = None
    module.start_join(attempts, period)
    return None


def _cmd_send(module: Rak3172, form: str, arg: str) -> str | None:
    """send an uplink (port:hex payload)"""
    _only(form, "write")
    module._need_mode(1)
    port_text, sep, hex_text = arg.partition(":")
    if not sep:
        raise ValueError(arg)
    port = _parse_int(port_text, 1, 223)
    if len(hex_text) % 2:
        raise ValueError(hex_text)
    payload = bytes.fromhex(hex_text)
    if module.settings.join_mode == 0 and module.session is None:
        module._abp_session()
    if not module.joined():
        raise CommandError(AT_NO_NETWORK_JOINED)
    module._need_idle()
    module.send_uplink(port, payload)
    return None


def _cmd_recv(module: Rak3172, form: str, arg: str) -> str | None:
    """get the last downlink (port:hex)"""
    _only(form, "read")
    port, data = module.last_downlink
    return f"{port}:{data.hex().upper()}"


def _cmd_class(module: Rak3172, form: str, arg: str) -> str | None:
    """get or set the device class (A; B and C are not emulated)"""
    _only(form, "read", "write")
    module._need_mode(1)
    if form == "read":
        return "A"
    if arg.upper() != "A":
        raise CommandError(AT_MODE_NO_SUPPORT if arg.upper() in ("B", "C") else AT_PARAM_ERROR)
    return None


def _cmd_ver(module: Rak3172, form: str, arg: str) -> str | None:
    """get the firmware version"""
    _only(form, "read")
    return VERSION


def _cmd_p2p(module: Rak3172, form: str, arg: str) -> str | None:
    """get or set the P2P radio (freq:sf:bw:cr:preamble:txp; bw 0/1/2 = 125/250/500 kHz, cr 0..3 = 4/5..4/8)"""
    _only(form, "read", "write")
    module._need_mode(0)
    if form == "read":
        return ":".join(str(v) for v in module.settings.p2p)
    parts = arg.split(":")
    if len(parts) != 6:
        raise ValueError(arg)
    module._need_idle()
    if module._precv:
        raise CommandError(AT_BUSY_ERROR)
    module.settings.p2p = (_parse_int(parts[0], 150_000_000, 960_000_000), _parse_int(parts[1], 6, 12),
                           _parse_int(parts[2], 0, 2), _parse_int(parts[3], 0, 3), _parse_int(parts[4], 5, 65535),
                           _parse_int(parts[5], 5, 22))
    return None


def _cmd_syncword(module: Rak3172, form: str, arg: str) -> str | None:
    """get or set the P2P sync word (hex: 3444 public LoRaWAN, 1424 private)"""
    _only(form, "read", "write")
    module._need_mode(0)
    if form == "read":
        return "%04X" % module.settings.sync_word
    module._need_idle()
    module.settings.sync_word = int.from_bytes(_parse_hex(arg, 2), "big")
    return None


def _cmd_iqinver(module: Rak3172, form: str, arg: str) -> str | None:
    """get or set P2P IQ inversion (0 normal, 1 inverted)"""
    _only(form, "read", "write")
    module._need_mode(0)
    if form == "read":
        return str(module.settings.iq_inverted)
    module._need_idle()
    module.settings.iq_inverted = _parse_int(arg, 0, 1)
    return None


def _cmd_psend(module: Rak3172, form: str, arg: str) -> str | None:
    """send a P2P frame (hex payload, 1..255 bytes)"""
    _only(form, "write")
    module._need_mode(0)
    if len(arg) % 2 or not 2 <= len(arg) <= 510:
        raise ValueError(arg)
    payload = bytes.fromhex(arg)
    if module._precv or module._tx is not None:
        raise CommandError(AT_BUSY_ERROR)
    module.p2p_send(payload)
    return None


def _cmd_precv(module: Rak3172, form: str, arg: str) -> str | None:
    """P2P receive (ms: 65534 continuous, 65535 one packet, 0 stop)"""
    _only(form, "read", "write")
    module._need_mode(0)
    if form == "read":
        return str(module._precv)
    value = _parse_int(arg, 0, 65535)
    if module._tx is not None:
        raise CommandError(AT_BUSY_ERROR)
    module.start_p2p_receive(value)
    return None


COMMANDS: dict[str, Callable[[Rak3172, str, str], str | None]] = {
    "NWM": _cmd_nwm, "BAND": _cmd_band, "NJM": _cmd_njm, "NJS": _cmd_njs, "JOIN": _cmd_join, "SEND": _cmd_send,
    "RECV": _cmd_recv, "CLASS": _cmd_class, "VER": _cmd_ver,
    "DEVEUI": _hex_setting("dev_eui", 8, "get or set the device EUI (16 hex digits)"),
    "APPEUI": _hex_setting("app_eui", 8, "get or set the application (join) EUI (16 hex digits)"),
    "APPKEY": _hex_setting("app_key", 16, "get or set the application key (32 hex digits)"),
    "DEVADDR": _hex_setting("dev_addr", 4, "get or set the device address (8 hex digits)"),
    "APPSKEY": _hex_setting("app_s_key", 16, "get or set the application session key (32 hex digits)"),
    "NWKSKEY": _hex_setting("nwk_s_key", 16, "get or set the network session key (32 hex digits)"),
    "CFM": _int_setting("confirmed", 0, 1, "get or set confirmed uplinks (0/1)", mode=1),
    "RETY": _int_setting("retries", 0, 7, "get or set the retries of a confirmed uplink (0..7)", mode=1),
    "ADR": _int_setting("adr", 0, 1, "get or set adaptive data rate (0/1)", mode=1),
    "DR": _int_setting("data_rate", 0, 6, "get or set the data rate (0..6)", mode=1),
    "TXP": _int_setting("tx_power", 0, 7, "get or set the TX power index (0..7)", mode=1),
    "LINKCHECK": _int_setting("link_check", 0, 2, "link check (0 off, 1 once, 2 every uplink)", mode=1),
    "P2P": _cmd_p2p, "SYNCWORD": _cmd_syncword, "IQINVER": _cmd_iqinver, "PSEND": _cmd_psend, "PRECV": _cmd_precv,
}


class PtyLink:
    """A module's UART on a pty: the slave is symlinked at `link` (like /dev/ttyUSB0) for a host program (pyserial);
    raw mode, bytes both ways. Runs on the rig's event loop; output no one reads is dropped (counted) once the pty's
    buffer is full."""

    def __init__(self, module: Rak3172, link: Path, loop):
        self.module, self.link, self.loop = module, Path(link), loop
        self.dropped_bytes = 0
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave  # the slave stays open here, so the master never sees a hang-up
        self.link.parent.mkdir(parents=True, exist_ok=True)
        if self.link.is_symlink() or self.link.exists():
            self.link.unlink()
        self.link.symlink_to(os.ttyname(slave))
        loop.add_reader(master, self._readable)
        module.output = self.write

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                log.warning("rak3172 %s: reading its pty failed: %s", self.module.receiver_id, exc)
            return
        self.module.receive(data)

    def write(self, data: bytes) -> None:
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        self.dropped_bytes += len(data) - written

    def close(self) -> None:
        self.loop.remove_reader(self._master)
        self.module.output = lambda data: None
        os.close(self._master)
        os.close(self._slave)
        if self.link.is_symlink():
            self.link.unlink()
