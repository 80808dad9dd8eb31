"""OTAA join for the sans-IO MAC (lorawan/mac.py): the attempt's start, the JoinRequest and the back-off after a failed
attempt; the JoinAccept is lorawan/join_accept.py's. The MAC imports this module to start an attempt and unloads it
once the JoinRequest is built (modules.unload), and imports it again for a failed attempt's back-off: a node joins once
per boot, so its code need not stay in the heap, and it is not loaded in the receive windows, with join_accept.py. Part
of the MAC, it reads and sets the Mac's state; the Mac ends the attempt (idle again) after join_failed."""
from micropython import const

from lorawan.crypto import cmac
from lorawan.events import JoinFailed, MacError

_JOIN_REQUEST = const(0x00)
_JOIN_BACKOFF_FIRST_MS = const(15000)
_JOIN_BACKOFF_MAX_MS = const(3600000)
_JOIN_ATTEMPTS_PER_DR = const(2)
_HOUR_MS = const(3600000)
_JOIN_ACCEPT_DELAY1_MS = const(5000)  # (JOIN_ACCEPT_DELAY2 is 1 s after, as RX2)


def start_join(mac, now_ms):
    """Mac.join() of an idle MAC: the current session, if any, ends and a join attempt starts; True if it must wait
    for the back-off of the last failed attempt (until mac.next_join_ms) before its JoinRequest."""
    if mac._otaa is None:
        raise MacError("not_otaa")
    if mac.dev_nonce > 0xFFFF:
        raise MacError("dev_nonce_exhausted")
    mac._dev_addr = None
    mac.region.reset_channels()
    mac._reset_session()
    mac.rx1_delay_ms = _JOIN_ACCEPT_DELAY1_MS  # until the JoinAccept's RxDelay sets the session's
    mac._attempt = 0
    if mac._join_since is None:
        mac._join_since = now_ms
    return now_ms < mac.next_join_ms


def join_request(mac):
    """The JoinRequest frame of the next DevNonce, which is used from now on."""
    nonce = mac.dev_nonce
    euis, app_key = mac._otaa
    msg = bytearray(19)
    msg[0] = _JOIN_REQUEST
    msg[1:17] = euis
    msg[17], msg[18] = nonce & 0xFF, nonce >> 8
    mac.dev_nonce = nonce + 1  # used from now on, even if the radio fails (the attempt's is dev_nonce - 1)
    return bytes(msg) + join_request_mic(app_key, msg)


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
    return [JoinFailed(mac.join_attempts, mac.dev_nonce - 1, mac.next_join_ms)]


def join_request_mic(app_key, msg):
    """MIC (4 bytes) of a JoinRequest: cmac(AppKey, MHDR | JoinEUI | DevEUI | DevNonce)."""
    return cmac(app_key, msg)[:4]
