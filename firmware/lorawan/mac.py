"""Sans-IO LoRaWAN 1.0.4 Class A MAC (end device). Pure state: no radio, no clock, no sleeping.

Inputs are method calls with the time they happen at (`now_ms`, any monotonic millisecond count): uplink(), tx_done(),
rx(), rx_timeout(), wake(). Each returns a list holding actions for the runner (Transmit, OpenRx, Wait) and events for the
app (Sent, Downlink, LinkCheck, RxIgnored, Done), in the order they happen. Frames are built, encrypted and MICed here;
MAC commands in downlinks are answered in the next uplink's FOpts.
"""
from lorawan.crypto import Cmac, crypt_payload, data_mic

UNCONFIRMED_UP, CONFIRMED_UP = 0x40, 0x80
UNCONFIRMED_DOWN, CONFIRMED_DOWN = 3, 5  # MType values
FCTRL_ADR, FCTRL_ACK, FCTRL_FPENDING = 0x80, 0x20, 0x10
RECEIVE_DELAY1_MS = 1000
RX_EARLY_MS = 5  # windows open this early: TX end is seen up to a poll late, and the preamble must find us listening
RX_PREAMBLE_SYMBOLS = 8  # a window stays open this many symbols past its nominal start to catch a preamble
MAX_FCNT_GAP = 16384
CONFIRMED_TRIES = 8
RETRY_BACKOFF_MS = (1000, 3000)
MAX_FOPTS = 15
# Downlink MAC command CID -> payload length (EU868)
_DOWN_COMMAND_LEN = {0x02: 2, 0x03: 4, 0x04: 1, 0x05: 4, 0x06: 0, 0x07: 5, 0x08: 1, 0x0A: 4, 0x0D: 5}
_STICKY_ANSWERS = (0x05, 0x08)  # repeated in every uplink until a downlink arrives (RXParamSetupAns, RXTimingSetupAns)


class MacError(ValueError):
    """A call the MAC cannot honour in its state or with its arguments; `reason` is a short snake_case label."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class Transmit:
    """Action: configure the radio with `radio` and send `frame` now; then call tx_done(end time)."""

    def __init__(self, frame, radio, fcnt, airtime_us):
        self.frame, self.radio, self.fcnt, self.airtime_us = frame, radio, fcnt, airtime_us


class OpenRx:
    """Action: listen with `radio` from `at_ms` for a preamble during `timeout_ms`; then call rx() or rx_timeout()."""

    def __init__(self, at_ms, radio, timeout_ms, window):
        self.at_ms, self.radio, self.timeout_ms, self.window = at_ms, radio, timeout_ms, window


class Wait:
    """Action: nothing to do before `until_ms` (duty cycle or retry back-off); then call wake()."""

    def __init__(self, until_ms, why):
        self.until_ms, self.why = until_ms, why


class Sent:
    """Event: an uplink left the antenna."""

    def __init__(self, fcnt, fport, freq_khz, dr, airtime_us, attempt):
        self.fcnt, self.fport, self.freq_khz, self.dr = fcnt, fport, freq_khz, dr
        self.airtime_us, self.attempt = airtime_us, attempt


class Downlink:
    """Event: application data (FPort 1..223) arrived in an RX window."""

    def __init__(self, fport, payload, fcnt, window, rssi, snr):
        self.fport, self.payload, self.fcnt, self.window, self.rssi, self.snr = fport, payload, fcnt, window, rssi, snr


class LinkCheck:
    """Event: LinkCheckAns (demodulation margin in dB, number of gateways)."""

    def __init__(self, margin, gateways):
        self.margin, self.gateways = margin, gateways


class RxIgnored:
    """Event: a frame heard in an RX window was dropped (not ours, bad MIC, replay, ...)."""

    def __init__(self, reason):
        self.reason = reason


class Done:
    """Event: the uplink's exchange is over and the MAC is idle. acked: True/False for confirmed uplinks, else None."""

    def __init__(self, fcnt, acked):
        self.fcnt, self.acked = fcnt, acked


_IDLE, _TX, _RX1, _RX2, _WAIT = "idle", "tx", "rx1", "rx2", "wait"


class Mac:
    """One end device's MAC state. Activate it (activate_abp) before the first uplink."""

    def __init__(self, region, data_rate=5, tx_power_dbm=14, adr=False):
        self.region = region
        self.data_rate = data_rate
        self.tx_power_dbm = tx_power_dbm
        self.adr = adr
        self.nb_trans = 1
        self.rx1_delay_ms = RECEIVE_DELAY1_MS
        self.rx1_dr_offset = 0
        self.rx2_freq_khz, self.rx2_dr = region.RX2_FREQ_KHZ, region.RX2_DR
        self.battery_level = 255  # DevStatusAns: 0 external power, 1..254 level, 255 unknown
        self.fcnt_up = 0
        self.fcnt_down = 0  # next FCntDown this device accepts
        self.counters = {}
        self.state = _IDLE
        self._dev_addr = None
        self._answers = []  # MAC command answers (bytes) for the next uplink
        self._link_check_wanted = False
        self._ack_next = False
        self._pending = None  # (fport, payload, confirmed)
        self._attempt = 0

    def activate_abp(self, dev_addr, nwk_s_key, app_s_key, fcnt_up=0, fcnt_down=0):
        """Personalise: dev_addr as an int (as printed, MSB first), 16-byte session keys, counters to resume from."""
        self._dev_addr = dev_addr.to_bytes(4, "little")
        self._nwk = Cmac(nwk_s_key)
        self._app_s_key = bytes(app_s_key)
        self.fcnt_up, self.fcnt_down = fcnt_up, fcnt_down

    @property
    def activated(self):
        return self._dev_addr is not None

    def request_link_check(self):
        """Ask the network for LinkCheckAns in the next uplink."""
        self._link_check_wanted = True

    def _count(self, name):
        self.counters[name] = self.counters.get(name, 0) + 1

    # ---- uplink path

    def uplink(self, fport, payload, now_ms, confirmed=False):
        """Start sending `payload` on `fport` (1..223)."""
        if not self.activated:
            raise MacError("not_activated")
        if self.state != _IDLE:
            raise MacError("busy")
        if not 1 <= fport <= 223:
            raise MacError("bad_fport")
        if len(payload) + len(b"".join(self._fopts())) > self.region.max_payload(self.data_rate):
            raise MacError("payload_too_long")
        self._pending = (fport, bytes(payload), confirmed)
        self._attempt = 0
        self._frame_fcnt = self.fcnt_up
        return self._try_send(now_ms)

    def _fopts(self):
        """The commands (answers, then LinkCheckReq) that fit in FOpts: whole commands, at most 15 bytes."""
        wanted = self._answers + [b"\x02"] if self._link_check_wanted else self._answers
        chosen, size = [], 0
        for command in wanted:
            if size + len(command) <= MAX_FOPTS:
                chosen.append(command)
                size += len(command)
        return chosen

    def _try_send(self, now_ms):
        freq, free_at = self.region.next_channel(self.data_rate, now_ms)
        if freq is None:
            self.state = _WAIT
            return [Wait(free_at, "duty_cycle")]
        fport, payload, confirmed = self._pending
        frame = self._build(fport, payload, confirmed)
        self._attempt += 1
        self._tx_freq = freq
        self._tx_airtime_us = self.region.airtime_us(len(frame), self.data_rate)
        self.state = _TX
        radio = self.region.radio_config(freq, self.data_rate, self.tx_power_dbm, True)
        return [Transmit(frame, radio, self._frame_fcnt, self._tx_airtime_us)]

    def _build(self, fport, payload, confirmed):
        fcnt = self._frame_fcnt
        self._fopts_sent = self._fopts()
        fopts = b"".join(self._fopts_sent)
        fctrl = len(fopts) | (FCTRL_ADR if self.adr else 0) | (FCTRL_ACK if self._ack_next else 0)
        body = bytearray()
        body.append(CONFIRMED_UP if confirmed else UNCONFIRMED_UP)
        body.extend(self._dev_addr)
        body.append(fctrl)
        body.append(fcnt & 0xFF)
        body.append(fcnt >> 8 & 0xFF)
        body.extend(fopts)
        body.append(fport)
        body.extend(crypt_payload(self._app_s_key, 0, self._dev_addr, fcnt, payload))
        body.extend(data_mic(self._nwk, 0, self._dev_addr, fcnt, body))
        return bytes(body)

    def tx_done(self, now_ms):
        """The radio finished sending at `now_ms`."""
        if self.state != _TX:
            raise MacError("unexpected_tx_done")
        self.region.note_transmission(self._tx_freq, now_ms, self._tx_airtime_us)
        if self._attempt == 1:
            self.fcnt_up = self._frame_fcnt + 1
        sent = self._fopts_sent
        self._answers = [a for a in self._answers if a[0] in _STICKY_ANSWERS or not any(a is c for c in sent)]
        self._link_check_wanted = self._link_check_wanted and b"\x02" not in sent
        self._ack_next = False
        self._tx_end = now_ms
        self.state = _RX1
        event = Sent(self._frame_fcnt, self._pending[0], self._tx_freq, self.data_rate, self._tx_airtime_us, self._attempt)
        dr = self.region.rx1_dr(self.data_rate, self.rx1_dr_offset)
        return [event, self._window(1, self._tx_freq, dr, now_ms + self.rx1_delay_ms)]

    def _window(self, number, freq, dr, nominal_ms):
        timeout_ms = 2 * RX_EARLY_MS + -(-RX_PREAMBLE_SYMBOLS * self.region.symbol_us(dr) // 1000)
        radio = self.region.radio_config(freq, dr, self.tx_power_dbm, False)
        return OpenRx(nominal_ms - RX_EARLY_MS, radio, timeout_ms, number)

    # ---- receive windows

    def rx_timeout(self, now_ms):
        """The window opened by the last OpenRx closed without a frame."""
        if self.state == _RX1:
            return self._after_rx1(now_ms)
        if self.state == _RX2:
            return self._finish(now_ms, False)
        raise MacError("unexpected_rx_timeout")

    def _after_rx1(self, now_ms):
        rx2_at = self._tx_end + self.rx1_delay_ms + 1000
        if now_ms > rx2_at - RX_EARLY_MS:
            self._count("rx2_missed")
            return self._finish(now_ms, False)
        self.state = _RX2
        return [self._window(2, self.rx2_freq_khz, self.rx2_dr, rx2_at)]

    def rx(self, frame, now_ms, rssi=0, snr=0):
        """A frame was received in the current window (with the radio's RSSI dBm and SNR dB)."""
        if self.state not in (_RX1, _RX2):
            raise MacError("unexpected_rx")
        window = 1 if self.state == _RX1 else 2
        try:
            events, acked = self._open_downlink(frame, window, rssi, snr)
        except MacError as exc:
            self._count(exc.reason)
            ignored = RxIgnored(exc.reason)
            return [ignored] + (self._after_rx1(now_ms) if window == 1 else self._finish(now_ms, False))
        self._answers = [a for a in self._answers if a[0] not in _STICKY_ANSWERS] + self._new_answers
        return events + self._finish(now_ms, acked, heard=True)

    def _finish(self, now_ms, acked, heard=False):
        confirmed = self._pending[2]
        tries = CONFIRMED_TRIES if confirmed else self.nb_trans
        if not acked and self._attempt < tries and not (heard and not confirmed):
            self.state = _WAIT
            low, high = RETRY_BACKOFF_MS
            return [Wait(now_ms + low + self.region.random(high - low + 1), "retransmission")]
        self.state = _IDLE
        self._pending = None
        return [Done(self._frame_fcnt, acked if confirmed else None)]

    def cancel(self):
        """Abandon the exchange in progress (the runner's radio failed). A frame that may have left keeps its FCnt used."""
        if self.state == _TX or self._attempt:
            self.fcnt_up = max(self.fcnt_up, self._frame_fcnt + 1)
        self.state = _IDLE
        self._pending = None

    def wake(self, now_ms):
        """The time a Wait asked for has come."""
        if self.state != _WAIT:
            return []
        return self._try_send(now_ms)

    def _open_downlink(self, frame, window, rssi, snr):
        """Check and decrypt a downlink; returns (events, ack bit). Raises MacError(reason) for a frame to drop (a
        replayed FCntDown shows as fcnt_gap: rebuilt above the last one, it lands more than MAX_FCNT_GAP ahead)."""
        if len(frame) < 12:
            raise MacError("too_short")
        mhdr = frame[0]
        if mhdr & 0x03:
            raise MacError("bad_major")
        mtype = mhdr >> 5
        if mtype not in (UNCONFIRMED_DOWN, CONFIRMED_DOWN):
            raise MacError("not_data_down")
        if bytes(frame[1:5]) != self._dev_addr:
            raise MacError("other_dev_addr")
        fctrl = frame[5]
        fopts_end = 8 + (fctrl & 0x0F)
        if fopts_end > len(frame) - 4:
            raise MacError("fopts_past_end")
        fcnt = (self.fcnt_down & ~0xFFFF) | frame[6] | frame[7] << 8
        if fcnt < self.fcnt_down:
            fcnt += 0x10000
        if fcnt - self.fcnt_down > MAX_FCNT_GAP:
            raise MacError("fcnt_gap")
        if data_mic(self._nwk, 1, self._dev_addr, fcnt, memoryview(frame)[:-4]) != bytes(frame[-4:]):
            raise MacError("mic_mismatch")
        fport = frame[fopts_end] if fopts_end < len(frame) - 4 else None
        if fport == 0 and fopts_end > 8:
            raise MacError("fopts_with_port0")
        self.fcnt_down = fcnt + 1
        if mtype == CONFIRMED_DOWN:
            self._ack_next = True
        payload = b""
        if fport is not None:
            key = self._nwk.key if fport == 0 else self._app_s_key
            payload = bytes(crypt_payload(key, 1, self._dev_addr, fcnt, memoryview(frame)[fopts_end + 1:-4]))
        commands = payload if fport == 0 else bytes(frame[8:fopts_end])
        self._new_answers = []
        events = self._mac_commands(commands, snr)
        if fport:
            events.append(Downlink(fport, payload, fcnt, window, rssi, snr))
        return events, bool(fctrl & FCTRL_ACK)

    # ---- MAC commands

    def _mac_commands(self, data, snr):
        events = []
        pos = 0
        while pos < len(data):
            cid = data[pos]
            size = _DOWN_COMMAND_LEN.get(cid)
            if size is None or pos + 1 + size > len(data):
                self._count("bad_mac_command")
                break
            args = data[pos + 1:pos + 1 + size]
            pos += 1 + size
            if cid == 0x02:
                events.append(LinkCheck(args[0], args[1]))
            elif cid == 0x03:
                self._answer(0x03, self._link_adr(args))
            elif cid == 0x04:
                self.region.aggregate_divisor = 1 << (args[0] & 0x0F)
                self._answer(0x04)
            elif cid == 0x05:
                self._answer(0x05, self._rx_param_setup(args))
            elif cid == 0x06:
                margin = max(-32, min(31, int(snr))) & 0x3F
                self._answer(0x06, self.battery_level, margin)
            elif cid == 0x07:
                self._answer(0x07, self._new_channel(args))
            elif cid == 0x08:
                self.rx1_delay_ms = 1000 * ((args[0] & 0x0F) or 1)
                self._answer(0x08)
            else:
                self._count("unhandled_mac_command")  # DlChannelReq, DeviceTimeAns: not supported yet
        return events

    def _answer(self, cid, *args):
        self._new_answers.append(bytes((cid,) + args))

    def _link_adr(self, args):
        dr, power_index = args[0] >> 4, args[0] & 0x0F
        mask = args[1] | args[2] << 8
        mask_control, nb_trans = args[3] >> 4 & 0x07, args[3] & 0x0F
        region = self.region
        if mask_control == 6:
            mask = sum(1 << i for i in range(len(region.channels)) if region.channels[i] is not None)
        mask_ok = mask_control in (0, 6) and mask != 0 and all(
            region.channels[i] is not None for i in range(len(region.channels)) if mask >> i & 1)
        new_dr = self.data_rate if dr == 0x0F else dr
        dr_ok = region.valid_dr(new_dr) and mask_ok and any(region.channels[i][1] <= new_dr <= region.channels[i][2]
                                          for i in range(len(region.channels)) if mask >> i & 1)
        power = self.tx_power_dbm if power_index == 0x0F else region.tx_power_dbm(power_index)
        power_ok = power is not None
        if mask_ok and dr_ok and power_ok:
            region.channel_mask = mask
            self.data_rate, self.tx_power_dbm = new_dr, power
            self.nb_trans = nb_trans or 1
        return (4 if power_ok else 0) | (2 if dr_ok else 0) | (1 if mask_ok else 0)

    def _rx_param_setup(self, args):
        offset, rx2_dr = args[0] >> 4 & 0x07, args[0] & 0x0F
        freq_khz = (args[1] | args[2] << 8 | args[3] << 16) // 10
        offset_ok, dr_ok, freq_ok = offset <= 5, self.region.valid_dr(rx2_dr), self.region.valid_frequency(freq_khz)
        if offset_ok and dr_ok and freq_ok:
            self.rx1_dr_offset, self.rx2_dr, self.rx2_freq_khz = offset, rx2_dr, freq_khz
        return (4 if offset_ok else 0) | (2 if dr_ok else 0) | (1 if freq_ok else 0)

    def _new_channel(self, args):
        index = args[0]
        freq_khz = (args[1] | args[2] << 8 | args[3] << 16) // 10
        min_dr, max_dr = args[4] & 0x0F, args[4] >> 4
        region = self.region
        fixed = index < 3 or index >= len(region.channels)
        freq_ok = not fixed and (freq_khz == 0 or region.valid_frequency(freq_khz))
        dr_ok = not fixed and min_dr <= max_dr and region.valid_dr(max_dr)
        if freq_ok and dr_ok:
            region.channels[index] = [freq_khz, min_dr, max_dr] if freq_khz else None
            if freq_khz:
                region.channel_mask |= 1 << index
            else:
                region.channel_mask &= ~(1 << index)
        return (2 if dr_ok else 0) | (1 if freq_ok else 0)
