"""Compact canonical CBOR (RFC 8949) for MicroPython, as much as a node sends: `encode_reading`, which turns a reading
into its payload (a map of small int keys to ints and bools) through the generated schema table (no buffer kept
between readings); `entry_bytes`, the bytes one field takes in a payload (to fit a reading into a budget); and
CborError. No general encoder: the node never sends anything else, and its code would only take heap. The decoder for
downlinks is cbor_decode.py, loaded only while a downlink is decoded."""
from micropython import const

from schema_v1 import MESSAGES

_FALSE = const(0xF4)
_TRUE = const(0xF5)
# A field's spec in the table, as codecs/firmware_table.py writes it (cbor_decode.field_spec reads it for downlinks):
# key + type + factor << 10
_KEY_MASK = const(0xFF)
_TYPE_MASK = const(0x300)
_INT = const(0x100)
_BOOL = const(0x200)
_FACTOR_SHIFT = const(10)


class CborError(ValueError):
    """Bad CBOR input or a value CBOR cannot carry; `reason` is a short snake_case label."""

    def __init__(self, reason, detail=""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason


_MAX_ITEM = const(9)  # bytes of the longest head: initial byte + 8-byte argument
_MAX_ENTRY = const(11)  # bytes of the longest map entry: a key (< 256: 2 bytes at most) and its value's head


def _fields(kind, message):
    """(fport, {field name: spec}) of `message` of node `kind` in the table."""
    try:
        return MESSAGES[kind][message]
    except KeyError:
        raise CborError("unknown_message", kind + "/" + message) from None


def _head(buf, pos, major, n):
    """Write the head of major type `major` with argument `n` in its shortest form at buf[pos]; the position after."""
    if n < 24:
        buf[pos] = major << 5 | n
        return pos + 1
    size, info = 1, 24
    while n >> 8 * size:  # n takes more bytes: 1, 2, 4 or 8 (additional information 24..27)
        size, info = size * 2, info + 1
    if info > 27:
        raise CborError("int_too_big")
    buf[pos] = major << 5 | info
    for i in range(size, 0, -1):
        buf[pos + i] = n & 0xFF
        n >>= 8
    return pos + 1 + size


def _put_field(buf, pos, name, value, spec):
    """Write field `name` (its table spec `spec`) at the engineering `value` as a map entry at buf[pos]: the key, then
    round(value * factor) (round(value / -factor) for a negative factor), or a bool for a bool field; the position
    after. CborError for a negative uint."""
    pos = _head(buf, pos, 0, spec & _KEY_MASK)
    type_bits = spec & _TYPE_MASK
    if type_bits == _BOOL:
        buf[pos] = _TRUE if value else _FALSE
        return pos + 1
    factor = spec >> _FACTOR_SHIFT
    raw = round(value * factor) if factor > 0 else round(value / -factor)
    if raw >= 0:
        return _head(buf, pos, 0, raw)
    if type_bits != _INT:
        raise CborError("negative_uint", name)
    return _head(buf, pos, 1, -1 - raw)


def entry_bytes(kind, message, name, value):
    """The bytes field `name` at the engineering `value` takes in a `message` payload of node `kind` (its key and
    value: what encode_reading adds for it); CborError as encode_reading gives."""
    spec = _fields(kind, message)[1].get(name)
    if spec is None:
        raise CborError("unknown_field", name)
    return _put_field(bytearray(_MAX_ENTRY), 0, name, value, spec)


def encode_reading(kind, message, values):
    """(fport, payload) for `values` ({field name: engineering value}) of `message` of node `kind`.

    Uses the generated table schema_v1.MESSAGES: raw = round(value * factor), keys ascending (the table's order),
    bools as CBOR bools. Fields missing from `values` (or None) are left out. The payload is built in a buffer of
    this call's (none kept between readings)."""
    fport, fields = _fields(kind, message)
    used = 0
    for name in values:
        if name not in fields:
            raise CborError("unknown_field", name)
        if values[name] is not None:
            used += 1
    buf = bytearray(_MAX_ITEM + _MAX_ENTRY * used)  # the map head, then a key and a value per field
    pos = _head(buf, 0, 5, used)
    for name in fields:
        value = values.get(name)
        if value is not None:
            pos = _put_field(buf, pos, name, value, fields[name])
    return fport, bytes(memoryview(buf)[:pos])
