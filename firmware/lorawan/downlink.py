"""A data downlink heard in a receive window, for the sans-IO MAC (lorawan/mac.py): checked (type, DevAddr, FCntDown,
MIC) and decrypted; the MAC hands its MAC commands to lorawan/commands.py. Downlinks are rare for a Class A node, so the
MAC imports this module for each one and unloads it before it loads commands.py (modules.unload). Part of the MAC, it
reads and sets the Mac's state."""
from micropython import const

from lorawan.crypto import crypt_payload, data_mic
from lorawan.events import Downlink
from lorawan.mac import STICKY_ANSWERS, MacError

_UNCONFIRMED_DOWN = const(3)  # MType values
_CONFIRMED_DOWN = const(5)
_FCTRL_ACK = const(0x20)
_MAX_FCNT_GAP = const(16384)


def open_downlink(mac, frame, window, rssi, snr):
    """Check and decrypt a downlink; returns (its MAC commands (bytes, maybe empty), [Downlink] or [] (no application
    data), ack bit). The sticky MAC answers are delivered (a downlink arrived). Raises MacError(reason) for a frame to
    drop: an FCntDown not newer than the last accepted one is fcnt_stale, one more than _MAX_FCNT_GAP ahead fcnt_gap."""
    if len(frame) < 12:
        raise MacError("too_short")
    mhdr = frame[0]
    if mhdr & 0x03:
        raise MacError("bad_major")
    mtype = mhdr >> 5
    if mtype not in (_UNCONFIRMED_DOWN, _CONFIRMED_DOWN):
        raise MacError("not_data_down")
    dev_addr = mac._dev_addr
    if bytes(frame[1:5]) != dev_addr:
        raise MacError("other_dev_addr")
    fctrl = frame[5]
    fopts_end = 8 + (fctrl & 0x0F)
    if fopts_end > len(frame) - 4:
        raise MacError("fopts_past_end")
    ahead = (frame[6] | frame[7] << 8) - mac.fcnt_down & 0xFFFF
    if ahead > _MAX_FCNT_GAP:
        raise MacError("fcnt_stale" if ahead >= 0x8000 else "fcnt_gap")
    fcnt = mac.fcnt_down + ahead
    if data_mic(mac._nwk_s_key, 1, dev_addr, fcnt, memoryview(frame)[:-4]) != bytes(frame[-4:]):
        raise MacError("mic_mismatch")
    fport = frame[fopts_end] if fopts_end < len(frame) - 4 else None
    if fport == 0 and fopts_end > 8:
        raise MacError("fopts_with_port0")
    mac.fcnt_down = fcnt + 1
    mac.adr_ack_cnt = mac._adr_steps = 0
    if mtype == _CONFIRMED_DOWN:
        mac._ack_next = True
    payload = b""
    if fport is not None:
        key = mac._nwk_s_key if fport == 0 else mac._app_s_key
        payload = bytes(crypt_payload(key, 1, dev_addr, fcnt, memoryview(frame)[fopts_end + 1:-4]))
    commands = payload if fport == 0 else bytes(frame[8:fopts_end])
    answers = mac._answers
    for answer in answers[:]:  # the sticky answers are delivered: a downlink arrived
        if answer[0] in STICKY_ANSWERS:
            answers.remove(answer)
    events = [Downlink(fport, payload, fcnt, window, rssi, snr)] if fport else []
    return commands, events, bool(fctrl & _FCTRL_ACK)
