"""The JoinAccept of an OTAA join for the sans-IO MAC (lorawan/mac.py): decryption, MIC check and session keys, with
their crypto; the network's settings it carries (RX settings, CFList) are lorawan/join_settings.py's. The MAC imports it
for a frame heard in a join's receive window (lorawan/join.py is unloaded by then) and unloads it before it loads
join_settings.py (modules.unload): the two are never in the heap together. Part of the MAC, it reads and sets the Mac's
state; the Mac ends the attempt (idle again) after both."""
from cryptolib import aes
from micropython import const

from lorawan.crypto import cmac
from lorawan.events import MacError

_ECB = const(1)
_JOIN_ACCEPT = const(0x20)


def open_join_accept(mac, frame):
    """Check a JoinAccept heard in a join window (length, type, MIC), decrypt it and set the session's keys; returns the
    decrypted JoinAccept (MHDR | JoinNonce | NetID | DevAddr | DLSettings | RxDelay | [CFList] | MIC) for
    lorawan/join_settings.py, which activates the session (its DevAddr) once its settings are applied. MacError(reason)
    for a frame to drop.

    The network encrypted with AES-decrypt, so the node uses AES-encrypt (ECB, with the AppKey), as it does for the
    session keys: NwkSKey | AppSKey = aes(AppKey, 0x01 | JoinNonce | NetID | DevNonce | pad, 0x02 | the same)."""
    if len(frame) not in (17, 33):
        raise MacError("bad_join_accept_length")
    if frame[0] != _JOIN_ACCEPT:
        raise MacError("not_join_accept")
    app_key = mac._otaa[1]
    msg = bytearray(frame)
    aes(app_key, _ECB).encrypt(memoryview(frame)[1:], memoryview(msg)[1:])
    if cmac(app_key, memoryview(msg)[:-4])[:4] != msg[-4:]:
        raise MacError("mic_mismatch")
    nonce = mac.dev_nonce - 1  # the attempt's DevNonce
    keys = bytearray(32)
    for start in (0, 16):
        keys[start] = 1 + start // 16
        keys[start + 1:start + 7] = msg[1:7]
        keys[start + 7], keys[start + 8] = nonce & 0xFF, nonce >> 8 & 0xFF
    aes(app_key, _ECB).encrypt(keys, keys)
    mac._nwk_s_key = bytes(keys[:16])
    mac._app_s_key = bytes(keys[16:])
    return msg
