"""Compact canonical CBOR (RFC 8949) for MicroPython, as much as a node sends: `encode_reading`, which turns a reading
into its payload (a map of small int keys to ints and bools) through the generated schema table in a reused buffer, and
CborError. No general encoder: the node never sends anything else, and its code would only take heap. The decoder for
downlinks is cbor_decode.py, loaded only while a downlink is decoded."""
from micropython import const

_FALSE = const(0xF4)
_TRUE = const(0xF5)


class CborError(ValueError):
    """Bad CBOR input or a value CBOR cannot carry; `reason` is a short snake_case label."""

    def __init__(self, reason, detail=""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason


_MAX_ITEM = const(9)  # bytes of the longest head: initial byte + 8-byte argument
_buffer = bytearray(64)  # reused for every payload; replaced by a larger one only for a message that might not fit


def _head(buf, pos, major, n):
    """Write the head of major type `major` with argument `n` in its shortest form at buf[pos]; the position after."""
    if n < 24:
        buf[pos] = major << 5 | n
        return pos + 1
    if n < 0x100:
        size, info = 1, 24
    elif n < 0x10000:
        size, info = 2, 25
    elif n < 0x100000000:
        size, info = 4, 26
    elif n < 0x10000000000000000:
        size, info = 8, 27
    else:
        raise CborError("int_too_big")
    buf[pos] = major << 5 | info
    for i in range(size, 0, -1):
        buf[pos + i] = n & 0xFF
        n >>= 8
    return pos + 1 + size


def encode_reading(kind, message, values):
    """(fport, payload) for `values` ({field name: engineering value}) of `message` of node `kind`.

    Uses the generated table schema_v1.MESSAGES: raw = round(value * factor), keys ascending, bools as CBOR
    bools. Fields missing from `values` (or None) are left out. The payload is built in a reused buffer."""
    from schema_v1 import MESSAGES

    try:
        fport, fields = MESSAGES[kind][message]
    except KeyError:
        raise CborError("unknown_message", kind + "/" + message) from None
    used = 0
    for name, _key, _factor, _code in fields:
        if values.get(name) is not None:
            used += 1
    if used != len(values):
        for name in values:
            if not any(field[0] == name for field in fields):
                raise CborError("unknown_field", name)
    global _buffer
    need = _MAX_ITEM * (1 + 2 * used)  # the map head, then a key and a value per field, each at most _MAX_ITEM
    if len(_buffer) < need:
        _buffer = bytearray(need)
    buf = _buffer
    pos = _head(buf, 0, 5, used)
    for name, key, factor, code in fields:
        value = values.get(name)
        if value is None:
            continue
        pos = _head(buf, pos, 0, key)
        if code == "b":
            buf[pos] = _TRUE if value else _FALSE
            pos += 1
            continue
        raw = round(value * factor)
        if code == "u" and raw < 0:
            raise CborError("negative_uint", name)
        pos = _head(buf, pos, 0, raw) if raw >= 0 else _head(buf, pos, 1, -1 - raw)
    return fport, bytes(memoryview(buf)[:pos])
