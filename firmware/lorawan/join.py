"""OTAA join for the sans-IO MAC (lorawan/mac.py): the JoinRequest, the JoinAccept (decryption, MIC check, session
keys, RX settings, CFList) and the back-off after a failed attempt, with the join's crypto. The MAC imports it while it
joins and unloads it once joined (modules.unload): a node joins once per boot, so its code need not stay in the heap.
Part of the MAC, it reads and sets the Mac's state; the Mac ends the attempt (idle again) after open_join_accept or
join_failed."""
from cryptolib import aes
from micropython import const

from lorawan.crypto import Cmac, CryptoError, check_key
from lorawan.events import JoinFailed, Joined, Wait
from lorawan.mac import IDLE, WAIT, MacError

_ECB = const(1)
_JOIN_REQUEST = const(0x00)
_JOIN_ACCEPT = const(0x20)
_JOIN_BACKOFF_FIRST_MS = const(15000)
_JOIN_BACKOFF_MAX_MS = const(3600000)
_JOIN_ATTEMPTS_PER_DR = const(2)
_HOUR_MS = const(3600000)


def start_join(mac, now_ms):
    """Mac.join(): one join attempt, after a Wait if the back-off of the last failed one is not over; the current
    session, if any, ends."""
    if mac._otaa is None:
        raise MacError("not_otaa")
    if mac.state != IDLE:
        raise MacError("busy")
    if mac.dev_nonce > 0xFFFF:
        raise MacError("dev_nonce_exhausted")
    mac._dev_addr = None
    mac.region.reset_channels()
    mac._reset_session()
    mac._joining = True
    mac._attempt = 0
    if mac._join_since is None:
        mac._join_since = now_ms
    if now_ms < mac.next_join_ms:
        mac.state = WAIT
        return [Wait(mac.next_join_ms, "join_backoff")]
    return mac._try_send(now_ms)


def join_request(mac):
    """The JoinRequest frame of the next DevNonce, which is used from now on."""
    nonce = mac.dev_nonce
    euis, app_cmac = mac._otaa
    msg = bytearray(19)
    msg[0] = _JOIN_REQUEST
    msg[1:17] = euis
    msg[17], msg[18] = nonce & 0xFF, nonce >> 8
    mac.dev_nonce = nonce + 1  # used from now on, even if the radio fails
    mac._join_nonce = nonce
    return bytes(msg) + join_request_mic(app_cmac, msg)


def open_join_accept(mac, frame, window):
    """Check and apply a JoinAccept heard in RX`window`: the session starts; [Joined]. MacError(reason) for a frame
    to drop."""
    if len(frame) not in (17, 33):
        raise MacError("bad_join_accept_length")
    if frame[0] != _JOIN_ACCEPT:
        raise MacError("not_join_accept")
    app_cmac = mac._otaa[1]
    try:
        msg = join_accept_open(app_cmac.key, app_cmac, frame)
    except CryptoError as exc:
        raise MacError(exc.reason) from None
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
    """A JoinAccept's CFList (type 0: five frequencies for channels 3..7); False if it was not usable."""
    if len(cflist) != 16 or cflist[15] != 0:
        return False
    freqs = [(cflist[i] | cflist[i + 1] << 8 | cflist[i + 2] << 16) // 10 for i in range(0, 15, 3)]
    if any(f and not region.valid_frequency(f) for f in freqs):
        return False
    for i, freq_khz in enumerate(freqs):
        region.set_channel(len(region.DEFAULT_CHANNELS) + i, freq_khz)
    return True


def join_failed(mac, now_ms):
    """The attempt got no JoinAccept: the join DR steps down every second failure, and the next attempt waits for the
    join duty cycle or a random back-off that doubles per failure, whichever is longer; [JoinFailed]."""
    mac.join_attempts += 1
    if mac.join_attempts % _JOIN_ATTEMPTS_PER_DR == 0 and mac.data_rate > 0:
        mac.data_rate -= 1
    trying_ms = now_ms - mac._join_since
    divisor = 100 if trying_ms < _HOUR_MS else 1000 if trying_ms < 11 * _HOUR_MS else 10000
    duty_ms = -(-mac._tx_airtime_us * (divisor - 1) // 1000)
    cap = min(_JOIN_BACKOFF_MAX_MS, _JOIN_BACKOFF_FIRST_MS << min(mac.join_attempts - 1, 12))
    delay = cap // 2 + mac.region.random(cap // 2 + 1)
    mac.next_join_ms = mac._tx_end + max(duty_ms, delay)
    return [JoinFailed(mac.join_attempts, mac._join_nonce, mac.next_join_ms)]


def join_request_mic(app_cmac, msg):
    """MIC (4 bytes) of a JoinRequest: cmac(AppKey, MHDR | JoinEUI | DevEUI | DevNonce)."""
    return app_cmac.digest(msg)[:4]


def join_accept_open(app_key, app_cmac, frame):
    """Decrypt a JoinAccept frame (MHDR | encrypted rest) and check its MIC; returns the plain MHDR..CFList bytes.

    The network encrypted with AES-decrypt, so the node uses AES-encrypt."""
    body = len(frame) - 1
    if body not in (16, 32):
        raise CryptoError("bad_join_accept_length")
    plain = bytearray(frame)
    aes(check_key(app_key), _ECB).encrypt(memoryview(frame)[1:], memoryview(plain)[1:])
    msg = bytes(plain[:-4])
    if app_cmac.digest(msg)[:4] != bytes(plain[-4:]):
        raise CryptoError("mic_mismatch")
    return msg


def session_keys(app_key, join_nonce, net_id, dev_nonce):
    """(NwkSKey, AppSKey) for LoRaWAN 1.0.x: aes(AppKey, 0x01|0x02 | JoinNonce(3) | NetID(3) | DevNonce(2) | pad).

    join_nonce and net_id are the 3-byte little-endian fields as received; dev_nonce is an int."""
    cipher = aes(check_key(app_key), _ECB)
    block = bytearray(32)
    for start, tag in ((0, 1), (16, 2)):
        block[start] = tag
        block[start + 1:start + 4] = join_nonce
        block[start + 4:start + 7] = net_id
        block[start + 7] = dev_nonce & 0xFF
        block[start + 8] = dev_nonce >> 8 & 0xFF
    keys = cipher.encrypt(block)
    return bytes(keys[:16]), bytes(keys[16:])
