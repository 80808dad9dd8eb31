"""The JoinAccept of an OTAA join for the sans-IO MAC (lorawan/mac.py): decryption, MIC check, session keys, RX
settings and CFList, with their crypto. The MAC imports it for a frame heard in a join's receive window (lorawan/join.py
is unloaded by then) and unloads it after (modules.unload). Part of the MAC, it reads and sets the Mac's state; the Mac ends
the attempt (idle again) after open_join_accept."""
from cryptolib import aes
from micropython import const

from lorawan.crypto import Cmac
from lorawan.events import Joined, MacError

_ECB = const(1)
_JOIN_ACCEPT = const(0x20)


def open_join_accept(mac, frame, window):
    """Check and apply a JoinAccept heard in RX`window`: the session starts; [Joined]. MacError(reason) for a frame
    to drop."""
    app_cmac = mac._otaa[1]
    msg = join_accept_open(app_cmac, frame)
    nwk_s_key, mac._app_s_key = session_keys(app_cmac.key, msg[1:4], msg[4:7], mac._join_nonce)
    mac._nwk = Cmac(nwk_s_key)
    mac._dev_addr = bytes(msg[7:11])
    offset, rx2_dr = msg[11] >> 4 & 0x07, msg[11] & 0x0F
    if offset <= 5 and mac.region.valid_dr(rx2_dr):
        mac.rx1_dr_offset, mac.rx2_dr = offset, rx2_dr
    else:
        mac.count("bad_dl_settings")
    mac.rx1_delay_ms = 1000 * ((msg[12] & 0x0F) or 1)
    if len(msg) == 29 and not _apply_cflist(mac.region, msg[13:29]):
        mac.count("bad_cflist")
    mac.join_attempts = 0
    return [Joined(mac.dev_addr, mac._join_nonce, window, mac._tx_dr)]


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


def join_accept_open(app_cmac, frame):
    """Check a JoinAccept frame (MHDR | encrypted rest), decrypt it with the AppKey of app_cmac (a Cmac) and check its
    MIC; returns the plain MHDR..CFList bytes. MacError(reason) for a frame to drop.

    The network encrypted with AES-decrypt, so the node uses AES-encrypt."""
    if len(frame) not in (17, 33):
        raise MacError("bad_join_accept_length")
    if frame[0] != _JOIN_ACCEPT:
        raise MacError("not_join_accept")
    plain = bytearray(frame)
    aes(app_cmac.key, _ECB).encrypt(memoryview(frame)[1:], memoryview(plain)[1:])
    msg = bytes(plain[:-4])
    if app_cmac.digest(msg)[:4] != bytes(plain[-4:]):
        raise MacError("mic_mismatch")
    return msg


def session_keys(app_key, join_nonce, net_id, dev_nonce):
    """(NwkSKey, AppSKey) for LoRaWAN 1.0.x: aes(AppKey, 0x01|0x02 | JoinNonce(3) | NetID(3) | DevNonce(2) | pad).

    join_nonce and net_id are the 3-byte little-endian fields as received; dev_nonce is an int."""
    block = bytearray(32)
    block[0], block[16] = 1, 2
    for start in (0, 16):
        block[start + 1:start + 4] = join_nonce
        block[start + 4:start + 7] = net_id
        block[start + 7] = dev_nonce & 0xFF
        block[start + 8] = dev_nonce >> 8 & 0xFF
    keys = aes(app_key, _ECB).encrypt(block)
    return bytes(keys[:16]), bytes(keys[16:])
