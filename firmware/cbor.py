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


class Writer:
    """Appends CBOR heads and simple values to a bytearray it owns and reuses, growing it only when an item does not
    fit. Only what encode_reading() writes: unsigned and negative ints, true and false in a map."""

    def __init__(self, size=64):
        self.buf = bytearray(size)
        self.pos = 0

    def _room(self, count):
        need = self.pos + count
        if need > len(self.buf):
            grown = bytearray(max(need, 2 * len(self.buf)))
            grown[:self.pos] = memoryview(self.buf)[:self.pos]
            self.buf = grown

    def byte(self, value):
        self._room(1)
        self.buf[self.pos] = value
        self.pos += 1

    def head(self, major, n):
        """Major type + argument in the shortest form."""
        if n < 24:
            self.byte(major << 5 | n)
            return
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
        self._room(1 + size)
        buf, pos = self.buf, self.pos
        buf[pos] = major << 5 | info
        for i in range(size, 0, -1):
            buf[pos + i] = n & 0xFF
            n >>= 8
        self.pos = pos + 1 + size

    def signed(self, value):
        if value >= 0:
            self.head(0, value)
        else:
            self.head(1, -1 - value)

    def getvalue(self):
        return bytes(memoryview(self.buf)[:self.pos])


_reading_writer = Writer(64)


def encode_reading(kind, message, values):
    """(fport, payload) for `values` ({field name: engineering value}) of `message` of node `kind`.

    Uses the generated table schema_v1.messages(kind): raw = round(value * factor), keys ascending, bools as CBOR bools. Fields
    missing from `values` (or None) are left out. The payload is built in a reused buffer."""
    from schema_v1 import messages

    try:
        fport, fields = messages(kind)[message]
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
    writer = _reading_writer
    writer.pos = 0
    writer.head(5, used)
    for name, key, factor, code in fields:
        value = values.get(name)
        if value is None:
            continue
        writer.head(0, key)
        if code == "b":
            writer.byte(_TRUE if value else _FALSE)
            continue
        raw = round(value * factor)
        if code == "u" and raw < 0:
            raise CborError("negative_uint", name)
        writer.signed(raw)
    return fport, writer.getvalue()
