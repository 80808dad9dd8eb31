"""LoRaWAN 1.0.x crypto on MicroPython's cryptolib: AES-CMAC (RFC 4493) as one CBC pass, data-frame MIC (B0 block) and
FRMPayload encryption (A_i blocks through ECB). The OTAA join's crypto is in lorawan/join.py and lorawan/join_accept.py.
Keys are plain 16-byte bytes: no object per key stays in the heap (the subkeys cost two doublings per CMAC)."""
from cryptolib import aes
from micropython import const

from lorawan.events import MacError

_ECB = const(1)
_CBC = const(2)
_ZERO_BLOCK = bytes(16)


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


def cmac(key, message, prefix=b""):
    """The 16-byte AES-CMAC with `key` (16 bytes) of prefix + message (the prefix saves a concatenation, e.g. for the
    B0 block). One CBC object does it all: encrypting the zero block first gives L = AES(key, 0), the subkeys' root,
    and leaves L as the chaining value, which XORing L into the first block cancels."""
    if len(key) != 16:
        raise MacError("bad_key_length")
    total = len(prefix) + len(message)
    blocks = max(1, (total + 15) // 16)
    buf = bytearray(blocks * 16)
    buf[:len(prefix)] = prefix
    buf[len(prefix):total] = message
    cipher = aes(key, _CBC, _ZERO_BLOCK)
    chaining = cipher.encrypt(_ZERO_BLOCK)
    subkey = _double(chaining)  # K1
    if not total or total % 16:
        buf[total] = 0x80
        subkey = _double(subkey)  # K2
    last = (blocks - 1) * 16
    for i in range(16):
        buf[i] ^= chaining[i]
        buf[last + i] ^= subkey[i]
    cipher.encrypt(buf, buf)
    return bytes(buf[last:])


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


def data_mic(nwk_s_key, direction, dev_addr_le, fcnt, msg):
    """MIC (4 bytes) of a data frame: cmac(NwkSKey, B0 | msg), msg = MHDR..FRMPayload; direction 0 up, 1 down."""
    return cmac(nwk_s_key, msg, _block(0x49, direction, dev_addr_le, fcnt, len(msg)))[:4]


def crypt_payload(key, direction, dev_addr_le, fcnt, data):
    """FRMPayload encryption = decryption: data XOR AES-ECB(key (16 bytes), A_1..A_n). Returns a new bytearray."""
    count = (len(data) + 15) // 16
    stream = bytearray(count * 16)
    for i in range(count):
        stream[i * 16:i * 16 + 16] = _block(0x01, direction, dev_addr_le, fcnt, i + 1)
    aes(key, _ECB).encrypt(stream, stream)
    out = bytearray(data)
    for i in range(len(out)):
        out[i] ^= stream[i]
    return out
