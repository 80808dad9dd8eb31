"""LoRaWAN 1.0.x crypto on MicroPython's cryptolib: AES-CMAC (RFC 4493) as one CBC pass with cached subkeys, data-frame MIC
(B0 block), FRMPayload encryption (A_i blocks through ECB), and the OTAA join functions (JoinRequest MIC, JoinAccept
decryption and MIC check, session key derivation)."""
from cryptolib import aes
from micropython import const

_ECB = const(1)
_CBC = const(2)
_ZERO_BLOCK = bytes(16)


class CryptoError(ValueError):
    """Bad key or frame material; `reason` is a short snake_case label."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _check_key(key):
    if len(key) != 16:
        raise CryptoError("bad_key_length")
    return bytes(key)


def _double(block):
    """GF(2^128) doubling used for the CMAC subkeys."""
    out = bytearray(16)
    carry = 0
    for i in range(15, -1, -1):
        out[i] = (block[i] << 1 | carry) & 0xFF
        carry = block[i] >> 7
    if carry:
        out[15] ^= 0x87
    return out


class Cmac:
    """AES-CMAC with one key; K1/K2 are computed once here."""

    def __init__(self, key):
        self.key = _check_key(key)
        self._k1 = _double(aes(self.key, _ECB).encrypt(_ZERO_BLOCK))
        self._k2 = _double(self._k1)

    def digest(self, message, prefix=b""):
        """The 16-byte CMAC of prefix + message (the prefix saves a concatenation, e.g. for the B0 block)."""
        total = len(prefix) + len(message)
        blocks = max(1, (total + 15) // 16)
        buf = bytearray(blocks * 16)
        buf[:len(prefix)] = prefix
        buf[len(prefix):total] = message
        if total and total % 16 == 0:
            subkey = self._k1
        else:
            buf[total] = 0x80
            subkey = self._k2
        last = (blocks - 1) * 16
        for i in range(16):
            buf[last + i] ^= subkey[i]
        aes(self.key, _CBC, _ZERO_BLOCK).encrypt(buf, buf)
        return bytes(buf[last:])


def aes_cmac(key, message):
    """RFC 4493 AES-CMAC of `message` under a 16-byte `key`."""
    return Cmac(key).digest(message)


def _block(first, direction, dev_addr_le, fcnt, last):
    """The B0 / A_i block layout: first | 0x00*4 | dir | DevAddr | FCnt32 | 0x00 | last."""
    block = bytearray(16)
    block[0] = first
    block[5] = direction
    block[6:10] = dev_addr_le
    block[10] = fcnt & 0xFF
    block[11] = fcnt >> 8 & 0xFF
    block[12] = fcnt >> 16 & 0xFF
    block[13] = fcnt >> 24 & 0xFF
    block[15] = last
    return block


def data_mic(nwk_cmac, direction, dev_addr_le, fcnt, msg):
    """MIC (4 bytes) of a data frame: cmac(NwkSKey, B0 | msg), msg = MHDR..FRMPayload; direction 0 up, 1 down."""
    return nwk_cmac.digest(msg, _block(0x49, direction, dev_addr_le, fcnt, len(msg)))[:4]


def crypt_payload(key, direction, dev_addr_le, fcnt, data):
    """FRMPayload encryption = decryption: data XOR AES-ECB(key, A_1..A_n). Returns a new bytearray."""
    count = (len(data) + 15) // 16
    stream = bytearray(count * 16)
    for i in range(count):
        stream[i * 16:i * 16 + 16] = _block(0x01, direction, dev_addr_le, fcnt, i + 1)
    aes(_check_key(key), _ECB).encrypt(stream, stream)
    out = bytearray(data)
    for i in range(len(out)):
        out[i] ^= stream[i]
    return out


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
    aes(_check_key(app_key), _ECB).encrypt(memoryview(frame)[1:], memoryview(plain)[1:])
    msg = bytes(plain[:-4])
    if app_cmac.digest(msg)[:4] != bytes(plain[-4:]):
        raise CryptoError("mic_mismatch")
    return msg


def session_keys(app_key, join_nonce, net_id, dev_nonce):
    """(NwkSKey, AppSKey) for LoRaWAN 1.0.x: aes(AppKey, 0x01|0x02 | JoinNonce(3) | NetID(3) | DevNonce(2) | pad).

    join_nonce and net_id are the 3-byte little-endian fields as received; dev_nonce is an int."""
    cipher = aes(_check_key(app_key), _ECB)
    block = bytearray(32)
    for start, tag in ((0, 1), (16, 2)):
        block[start] = tag
        block[start + 1:start + 4] = join_nonce
        block[start + 4:start + 7] = net_id
        block[start + 7] = dev_nonce & 0xFF
        block[start + 8] = dev_nonce >> 8 & 0xFF
    keys = cipher.encrypt(block)
    return bytes(keys[:16]), bytes(keys[16:])
