"""Sans-IO LoRaWAN 1.0.4 Class A MAC (end device). Pure state: no radio, no clock, no sleeping.

Inputs are method calls with the time they happen at (`now_ms`, any monotonic millisecond count): join(), uplink(),
tx_done(), rx(), rx_timeout(), wake(). Each returns a list holding actions for the runner ("transmit", "open_rx", "wait"
tuples, lorawan/events.py) and events for the app (Sent, Downlink, LinkCheck, DeviceTime, Joined, JoinFailed, NotSent,
RxIgnored, Done), in the order they happen. Uplinks are built, encrypted and MICed here; a downlink is checked and
decrypted by lorawan/downlink.py and its MAC commands handled by lorawan/commands.py (each loaded only while a downlink
is handled); the answers go in the next new uplink's FOpts, and RXParamSetupAns, RXTimingSetupAns and DlChannelAns
repeat until a downlink arrives.

Activation (lorawan/node_config.py, loaded at boot) is ABP (activate_abp) or OTAA (set_otaa, then join();
lorawan/join.py, join_accept.py and join_settings.py, loaded while the node joins, one at a time). Each join() is one
attempt with a fresh DevNonce, which the transmit action carries so that the runner persists the next one before the
JoinRequest leaves. A failed attempt gives JoinFailed with the earliest time of the next: the 1.0.4 join duty cycle
(1 %, 0.1 % after an hour, 0.01 % after eleven hours of trying) or a random delay that doubles per failure, whichever is
longer; every second failure lowers the join DR by one, and the session keeps the DR whose JoinRequest got through. The
JoinNonce is not required to grow: 1.0.4 does not ask it of a device, and a join server that lost its state could
otherwise never join the node again.

ADR: with `adr` on, uplinks carry the ADR bit; after ADR_ACK_LIMIT new frames without any downlink they set ADRACKReq,
and every ADR_ACK_DELAY further frames step back (lorawan/adr_backoff.py, loaded for a step): TX power to the default
first, then one DR lower per step down to DR0, then the default channels are enabled again and NbTrans returns to 1. An
OTAA session that heard nothing for SESSION_STALE_AFTER frames even so is stale: the network may have lost it, and the
runner ends it (end_stale_session) and joins again.

Repetitions (NbTrans for unconfirmed frames, retries until ACK up to CONFIRMED_TRIES for confirmed ones) resend the same
bytes with the same FCnt on a newly drawn channel. A payload longer than the DR allows gives NotSent, never a
truncation.
"""
from micropython import const

from lorawan.crypto import crypt_payload, data_mic
from lorawan.events import Done, MacError, NotSent, RxIgnored, Sent
from modules import unload

# Integer constants are const() with a leading underscore: the compiler puts their values into the code, so they take
# no room in the module's globals (heap) on the node.
_UNCONFIRMED_UP = const(0x40)
_CONFIRMED_UP = const(0x80)
_FCTRL_ADR = const(0x80)
_FCTRL_ADR_ACK_REQ = const(0x40)
_FCTRL_ACK = const(0x20)
_RECEIVE_DELAY1_MS = const(1000)  # RX2 is 1 s after RX1 (a join's too: lorawan/join.py sets its RX1 delay)
_RX_EARLY_MS = const(5)  # windows open early: TX end is seen up to a poll late, the preamble must find us listening
_RX_PREAMBLE_SYMBOLS = const(8)  # a window stays open this many symbols past its nominal start to catch a preamble
_CONFIRMED_TRIES = const(8)
_RETRY_BACKOFF_MIN_MS = const(1000)
_RETRY_BACKOFF_MAX_MS = const(3000)
_MAX_FOPTS = const(15)
_ADR_ACK_LIMIT = const(64)
_ADR_ACK_DELAY = const(32)
_SESSION_STALE_AFTER = const(_ADR_ACK_LIMIT + 8 * _ADR_ACK_DELAY)  # frames with no downlink before an OTAA node rejoins
_JOIN_REQUEST_LEN = const(23)
_LINK_CHECK_REQ, _DEVICE_TIME_REQ = b"\x02", b"\x0d"
# CIDs of the answers repeated in every uplink until a downlink arrives: RXParamSetupAns, RXTimingSetupAns, DlChannelAns
STICKY_ANSWERS = b"\x05\x08\x0a"


# The MAC's states (Mac.state)
_IDLE = const(0)
_TX = const(1)
_RX1 = const(2)
_RX2 = const(3)
_WAIT = const(4)


class Mac:
    """One end device's MAC state. Activate it (lorawan/node_config.py: activate_abp, or set_otaa + join) before the
    first uplink."""

    def __init__(self, region, data_rate=5, tx_power_dbm=14, adr=False):
        from lorawan.mac_setup import set_up_mac  # at boot only: it unloads itself

        set_up_mac(self, region, data_rate, tx_power_dbm, adr)

    def _reset_session(self):
        region = self.region
        self.tx_power_dbm = self.default_tx_power_dbm
        self.nb_trans = 1
        self.rx1_delay_ms = _RECEIVE_DELAY1_MS
        self.rx1_dr_offset = 0
        self.rx2_freq_khz, self.rx2_dr = region.RX2_FREQ_KHZ, region.RX2_DR
        self.fcnt_up = 0
        self.fcnt_down = 0  # next FCntDown this device accepts
        self.adr_ack_cnt = self._adr_steps = 0
        self._answers = []  # MAC command answers (bytes) for the next new uplink
        # set by the app to ask the network for LinkCheckAns / DeviceTimeAns in the next new uplink (once)
        self.link_check_wanted = self.device_time_wanted = False
        self._ack_next = False

    @property
    def activated(self):
        return self._dev_addr is not None

    def end_stale_session(self):
        """Forget an OTAA session with ADR on that heard no downlink for SESSION_STALE_AFTER new frames (the network
        may have lost it): the next join() starts a new one."""
        if self._otaa is not None and self.activated and self.adr and self.adr_ack_cnt >= _SESSION_STALE_AFTER:
            self.count("session_ended")
            self._dev_addr = None

    @property
    def dev_addr(self):
        """The DevAddr as printed (int), None before activation."""
        return None if self._dev_addr is None else int.from_bytes(self._dev_addr, "little")

    def count(self, name):
        """Add one to counter `name` (dropped frames, ignored commands, back-off steps, ...)."""
        self.counters[name] = self.counters.get(name, 0) + 1

    # ---- join

    def join(self, now_ms):
        """Start one join attempt (after a wait action if the back-off of the last failed one is not over). It ends the
        current session, if any, and ends with Joined or JoinFailed (lorawan/join.py)."""
        if self.state != _IDLE:
            raise MacError("busy")
        from lorawan.join import start_join

        if start_join(self, now_ms):  # the back-off of the last failed attempt is not over
            self.state = _WAIT
            return [("wait", self.next_join_ms, "join_backoff")]
        return self._try_send(now_ms)

    # ---- uplink path

    def uplink(self, fport, payload, now_ms, confirmed=False):
        """Start sending `payload` on `fport` (1..223); NotSent if it is longer than the data rate allows."""
        if not self.activated:
            raise MacError("not_activated")
        if self.state != _IDLE:
            raise MacError("busy")
        if not 1 <= fport <= 223:
            raise MacError("bad_fport")
        if self.fcnt_up > 0xFFFFFFFF:
            raise MacError("fcnt_exhausted")
        due = (self.adr_ack_cnt - _ADR_ACK_LIMIT) // _ADR_ACK_DELAY
        if self.adr and due > self._adr_steps:  # rare (no downlink for long): the code is loaded for it
            from lorawan.adr_backoff import adr_backoff

            adr_backoff(self, due)
            unload("lorawan.adr_backoff")
        limit = self.region.MAX_PAYLOAD[self.data_rate]
        if len(payload) > limit:
            return [NotSent("payload_too_long", "%d bytes, DR%d takes %d" % (len(payload), self.data_rate, limit))]
        self._pending = (fport, confirmed, self.fcnt_up)
        self._attempt = 0
        self._frame = self._build(fport, payload, confirmed, min(_MAX_FOPTS, limit - len(payload)))
        return self._try_send(now_ms)

    def _build(self, fport, payload, confirmed, fopts_room):
        """The frame; its FOpts carry the commands (answers, then requests) that fit in fopts_room bytes, whole."""
        fcnt = self.fcnt_up
        wanted = list(self._answers)
        if self.link_check_wanted:
            wanted.append(_LINK_CHECK_REQ)
        if self.device_time_wanted:
            wanted.append(_DEVICE_TIME_REQ)
        chosen, size = [], 0
        for command in wanted:
            if size + len(command) <= fopts_room:
                chosen.append(command)
                size += len(command)
        self._fopts_sent = chosen
        fopts = b"".join(chosen)
        fctrl = len(fopts) | (_FCTRL_ACK if self._ack_next else 0)
        if self.adr:
            fctrl |= _FCTRL_ADR | (_FCTRL_ADR_ACK_REQ if self.adr_ack_cnt >= _ADR_ACK_LIMIT else 0)
        body = bytearray()
        body.append(_CONFIRMED_UP if confirmed else _UNCONFIRMED_UP)
        body.extend(self._dev_addr)
        body.append(fctrl)
        body.append(fcnt & 0xFF)
        body.append(fcnt >> 8 & 0xFF)
        body.extend(fopts)
        body.append(fport)
        body.extend(crypt_payload(self._app_s_key, 0, self._dev_addr, fcnt, payload))
        body.extend(data_mic(self._nwk_s_key, 0, self._dev_addr, fcnt, body))
        return bytes(body)

    def _try_send(self, now_ms):
        dr = self.data_rate
        joining = self._pending is None
        airtime_us = self.region.airtime_us(_JOIN_REQUEST_LEN if joining else len(self._frame), dr)
        freq, free_at = self.region.next_channel(dr, now_ms, airtime_us)
        if freq is None:
            self.state = _WAIT
            return [("wait", free_at, "duty_cycle")]
        if joining:
            from lorawan.join import join_request

            frame = join_request(self)
            unload("lorawan.join")  # not needed in the receive windows (join_failed loads it again for a failure)
            fcnt, nonce = None, self.dev_nonce - 1  # the DevNonce join_request used
        else:
            frame, fcnt, nonce = self._frame, self._pending[2], None
        self._attempt += 1
        self._tx_freq, self._tx_airtime_us = freq, airtime_us
        self.state = _TX
        radio = self.region.radio_config(freq, dr, self.tx_power_dbm, True)
        return [("transmit", frame, radio, airtime_us, fcnt, nonce)]

    def tx_done(self, now_ms):
        """The radio finished sending at `now_ms`."""
        if self.state != _TX:
            raise MacError("unexpected_tx_done")
        self.region.note_transmission(self._tx_freq, now_ms, self._tx_airtime_us)
        self._tx_end = now_ms
        self.state = _RX1
        events = []
        if self._pending is not None:  # a data frame (the data rate is the one it left at)
            fport, _, fcnt = self._pending
            if self._attempt == 1:  # a new frame left: counters, and what its FOpts and FCtrl carried is delivered
                self.fcnt_up = fcnt + 1
                sent = self._fopts_sent
                for command in sent:  # answers sent are delivered, but the sticky ones repeat until a downlink
                    if command[0] not in STICKY_ANSWERS and command in self._answers:
                        self._answers.remove(command)
                self.link_check_wanted = self.link_check_wanted and _LINK_CHECK_REQ not in sent
                self.device_time_wanted = self.device_time_wanted and _DEVICE_TIME_REQ not in sent
                if self._frame[5] & _FCTRL_ACK:
                    self._ack_next = False
                if self.adr:
                    self.adr_ack_cnt += 1
            events.append(Sent(fcnt, fport, self._tx_freq, self.data_rate, self._tx_airtime_us, self._attempt))
        dr = self.region.rx1_dr(self.data_rate, self.rx1_dr_offset)
        events.append(self._window(1, self.region.rx1_freq(self._tx_freq), dr, now_ms + self.rx1_delay_ms))
        return events

    def _window(self, number, freq, dr, nominal_ms):
        timeout_ms = 2 * _RX_EARLY_MS + -(-_RX_PREAMBLE_SYMBOLS * self.region.symbol_us(dr) // 1000)
        radio = self.region.radio_config(freq, dr, self.tx_power_dbm, False)
        return ("open_rx", nominal_ms - _RX_EARLY_MS, radio, timeout_ms, number)

    # ---- receive windows

    def rx_timeout(self, now_ms):
        """The window opened by the last open_rx action closed without a frame."""
        if self.state == _RX1:
            return self._after_rx1(now_ms)
        if self.state == _RX2:
            return self._finish(now_ms, False)
        raise MacError("unexpected_rx_timeout")

    def _after_rx1(self, now_ms):
        rx2_at = self._tx_end + self.rx1_delay_ms + 1000
        if now_ms > rx2_at - _RX_EARLY_MS:
            self.count("rx2_missed")
            return self._finish(now_ms, False)
        self.state = _RX2
        return [self._window(2, self.rx2_freq_khz, self.rx2_dr, rx2_at)]

    def rx(self, frame, now_ms, rssi=0, snr=0):
        """A frame was received in the current window (with the radio's RSSI dBm and SNR dB)."""
        if self.state not in (_RX1, _RX2):
            raise MacError("unexpected_rx")
        window = 1 if self.state == _RX1 else 2
        try:
            if self._pending is None:  # a join's window: the JoinAccept's part of the join code
                from lorawan.join_accept import open_join_accept

                try:
                    accept = open_join_accept(self, frame)
                finally:
                    unload("lorawan.join_accept")
                del open_join_accept  # the last reference to its code: freed before join_settings' is loaded
                from lorawan.join_settings import start_session

                events = start_session(self, accept, window)
                unload("lorawan.join_settings")
                self.state = _IDLE
                return events
            events, acked = self._open_downlink(frame, window, rssi, snr)
        except MacError as exc:
            reason = exc.args[0]
            self.count(reason)
            ignored = RxIgnored(reason)
            return [ignored] + (self._after_rx1(now_ms) if window == 1 else self._finish(now_ms, False))
        return events + self._finish(now_ms, acked, heard=True)

    def _finish(self, now_ms, acked, heard=False):
        if self._pending is None:  # a join's
            from lorawan.join import join_failed

            events = join_failed(self, now_ms)
            self.state = _IDLE
            return events
        _, confirmed, fcnt = self._pending
        tries = _CONFIRMED_TRIES if confirmed else self.nb_trans
        if not acked and self._attempt < tries and not (heard and not confirmed):
            self.state = _WAIT
            low, high = _RETRY_BACKOFF_MIN_MS, _RETRY_BACKOFF_MAX_MS
            return [("wait", now_ms + low + self.region.random(high - low + 1), "retransmission")]
        self.state = _IDLE
        self._pending = None
        return [Done(fcnt, acked if confirmed else None)]

    def cancel(self):
        """Abandon the exchange in progress (the runner's radio failed). A frame that may have left keeps its FCnt used
        (a DevNonce is used as soon as its JoinRequest is built)."""
        if self._pending is not None and (self.state == _TX or self._attempt):
            self.fcnt_up = max(self.fcnt_up, self._pending[2] + 1)
        self.state = _IDLE
        self._pending = None

    def wake(self, now_ms):
        """The time a wait action asked for has come."""
        if self.state != _WAIT:
            return []
        return self._try_send(now_ms)

    def _open_downlink(self, frame, window, rssi, snr):
        """(events, ack bit) of a data downlink, or MacError(reason): lorawan/downlink.py checks and decrypts it, then
        lorawan/commands.py handles its MAC commands, each module loaded for that and unloaded before the next."""
        from lorawan.downlink import open_downlink

        try:
            commands, events, acked = open_downlink(self, frame, window, rssi, snr)
        finally:
            unload("lorawan.downlink")
        del open_downlink  # the last reference to the module's code: freed before the commands' is loaded
        if commands:
            from lorawan.commands import handle_commands

            command_events, answers = handle_commands(self, commands, snr, self._tx_end)
            unload("lorawan.commands")
            self._answers.extend(answers)
            events = command_events + events
        return events, acked
