"""The JoinAccept of an OTAA join for the sans-IO MAC (lorawan/mac.py): decryption, MIC check, session keys, RX
settings and CFList, with their crypto. The MAC imports it for a frame heard in a join's receive window (lorawan/join.py
is unloaded by then) and unloads it after (modules.unload). Part of the MAC, it reads and sets the Mac's state; the Mac
ends the attempt (idle again) after open_join_accept."""
from cryptolib import aes
from micropython import const

from lorawan.crypto import Cmac
from lorawan.events import Joined, MacError

_ECB = const(1)
_JOIN_ACCEPT = const(0x20)


def open_join_accept(mac, frame, window):
    """Check a JoinAccept heard in RX`window` (length, type, MIC), decrypt it and start its session: keys, DevAddr, RX
    settings, CFList; [Joined]. MacError(reason) for a frame to drop.

    The network encrypted with AES-decrypt, so the node uses AES-encrypt (ECB, with the AppKey), as it does for the
    session keys: NwkSKey | AppSKey = aes(AppKey, 0x01 | JoinNonce | NetID | DevNonce | pad, 0x02 | the same)."""
    if len(frame) not in (17, 33):
        raise MacError("bad_join_accept_length")
    if frame[0] != _JOIN_ACCEPT:
        raise MacError("not_join_accept")
    app_cmac = mac._otaa[1]
    msg = bytearray(frame)  # MHDR | JoinNonce(3) | NetID(3) | DevAddr(4) | DLSettings | RxDelay | [CFList(16)] | MIC
    aes(app_cmac.key, _ECB).encrypt(memoryview(frame)[1:], memoryview(msg)[1:])
    if app_cmac.digest(memoryview(msg)[:-4])[:4] != msg[-4:]:
        raise MacError("mic_mismatch")
    nonce = mac._join_nonce
    keys = bytearray(32)
    for start in (0, 16):
        keys[start] = 1 + start // 16
        keys[start + 1:start + 7] = msg[1:7]
        keys[start + 7], keys[start + 8] = nonce & 0xFF, nonce >> 8 & 0xFF
    aes(app_cmac.key, _ECB).encrypt(keys, keys)
    mac._nwk = Cmac(keys[:16])
    mac._app_s_key = bytes(keys[16:])
    mac._dev_addr = bytes(msg[7:11])
    offset, rx2_dr = msg[11] >> 4 & 0x07, msg[11] & 0x0F
    if offset <= 5 and mac.region.valid_dr(rx2_dr):
        mac.rx1_dr_offset, mac.rx2_dr = offset, rx2_dr
    else:
        mac.count("bad_dl_settings")
    mac.rx1_delay_ms = 1000 * ((msg[12] & 0x0F) or 1)
    if len(msg) == 33 and not _apply_cflist(mac.region, msg[13:29]):
        mac.count("bad_cflist")
    mac.join_attempts = 0
    return [Joined(mac.dev_addr, nonce, window, mac._tx_dr)]


def _apply_cflist(region, cflist):
    """A JoinAccept's 16-byte CFList (type 0: five frequencies for channels 3..7); False if it was not usable."""
    if cflist[15] != 0:
        return False
    freqs = []
    for i in range(0, 15, 3):
        freq_khz = (cflist[i] | cflist[i + 1] << 8 | cflist[i + 2] << 16) // 10
        if freq_khz and not region.valid_frequency(freq_khz):
            return False
        freqs.append(freq_khz)
    for i, freq_khz in enumerate(freqs):
        region.set_channel(len(region.DEFAULT_CHANNELS) + i, freq_khz)
    return True
