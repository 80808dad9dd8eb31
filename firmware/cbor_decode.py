"""The CBOR decoder for downlinks (RFC 8949, definite lengths, no tags): `loads`, and `decode_message`, which turns a
downlink payload (e.g. the FPort 3 config) back into named values through the generated schema table. Apps load it
only while a downlink is decoded (modules.unload after), as its code would otherwise stay in the heap for good."""
import struct

from micropython import const

from cbor import CborError

_MAX_DEPTH = const(16)
# A field's spec in the table, as codecs/firmware_table.py writes it (cbor.py reads it too): key + type + factor << 10
_KEY_MASK = const(0xFF)
_TYPE_MASK = const(0x300)
_INT = const(0x100)
_BOOL = const(0x200)
_FACTOR_SHIFT = const(10)


# A reader is a two-item list, [the bytes (a memoryview), the position of the next item]: the decoder's only state.
def _take(reader, count):
    """The next `count` bytes of `reader`, which moves past them; CborError "truncated" when fewer are left."""
    data, pos = reader
    end = pos + count
    if end > len(data):
        raise CborError("truncated")
    reader[1] = end
    return data[pos:end]


def _item(reader, depth=0):
    """The next item of `reader`, which moves past it; the items inside it are read at depth + 1."""
    if depth > _MAX_DEPTH:
        raise CborError("too_deep")
    initial = _take(reader, 1)[0]
    major, info = initial >> 5, initial & 0x1F
    if major == 7:  # simple values and floats
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if 25 <= info <= 27:  # a half, single or double float: struct format e, f or d
            return struct.unpack(">" + "efd"[info - 25], _take(reader, 1 << (info - 24)))[0]
        raise CborError("unsupported_simple")
    if info < 24:
        n = info
    elif info <= 27:
        n = int.from_bytes(_take(reader, 1 << (info - 24)), "big")
    else:
        raise CborError("unsupported_length")
    if major == 0:
        return n
    if major == 1:
        return -1 - n
    if major <= 5 and n > len(reader[0]) - reader[1]:  # every byte, character or item takes one byte or more
        raise CborError("truncated")
    if major == 2:
        return bytes(_take(reader, n))
    if major == 3:
        data = bytes(_take(reader, n))
        if not _valid_utf8(data):
            raise CborError("bad_utf8")
        return str(data, "utf-8")
    if major == 4:
        result = []
        for _ in range(n):
            result.append(_item(reader, depth + 1))
        return result
    if major == 5:
        result = {}
        for _ in range(n):
            key = _item(reader, depth + 1)
            if type(key) in (list, dict):
                raise CborError("unhashable_key")
            result[key] = _item(reader, depth + 1)
        return result
    raise CborError("unsupported_tag")


def _valid_utf8(data):
    """Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF); MicroPython's own decoder
    lets some of those through."""
    i, n = 0, len(data)
    while i < n:
        lead = data[i]
        i += 1
        if lead < 0x80:
            continue
        if 0xC2 <= lead <= 0xDF:
            count, low, high = 1, 0x80, 0xBF
        elif 0xE0 <= lead <= 0xEF:
            count, low, high = 2, 0xA0 if lead == 0xE0 else 0x80, 0x9F if lead == 0xED else 0xBF
        elif 0xF0 <= lead <= 0xF4:
            count, low, high = 3, 0x90 if lead == 0xF0 else 0x80, 0x8F if lead == 0xF4 else 0xBF
        else:
            return False
        if i + count > n or not low <= data[i] <= high:
            return False
        for j in range(i + 1, i + count):
            if not 0x80 <= data[j] <= 0xBF:
                return False
        i += count
    return True


def loads(data):
    """The value in `data`, which must hold exactly one CBOR item (definite lengths, no tags); else CborError."""
    reader = [memoryview(data), 0]
    value = _item(reader)
    if reader[1] != len(data):
        raise CborError("trailing_bytes")
    return value


def field_spec(spec):
    """(key, type code "u", "i" or "b", factor) of a field's spec in the table; the node sends raw = round(value *
    factor), or round(value / -factor) for a negative factor."""
    type_bits = spec & _TYPE_MASK
    return spec & _KEY_MASK, "b" if type_bits == _BOOL else "i" if type_bits == _INT else "u", spec >> _FACTOR_SHIFT


def decode_message(kind, fport, payload):
    """(message name, {field name: value}, [unknown keys]) of a downlink `payload` on `fport` for node `kind`, through
    the generated table: value = raw / factor (the raw int itself when factor is 1; raw * -factor for a negative
    factor), bools as bools. CborError for malformed CBOR, a non-map, an FPort the kind has no message for, or a value
    of the wrong type."""
    from schema_v1 import MESSAGES

    for name, (port, fields) in MESSAGES.get(kind, {}).items():
        if port == fport:
            break
    else:
        raise CborError("unknown_fport", "%s has no message on FPort %d" % (kind, fport))
    data = loads(payload)
    if type(data) is not dict:
        raise CborError("not_a_map")
    values, unknown = {}, []
    for key, raw in data.items():
        for field_name in fields:
            if fields[field_name] & _KEY_MASK == key:
                break
        else:
            unknown.append(key)
            continue
        _key, code, factor = field_spec(fields[field_name])
        if code == "b":
            if type(raw) is not bool:
                raise CborError("wrong_type", field_name)
            values[field_name] = raw
        elif type(raw) is not int or code == "u" and raw < 0:
            raise CborError("wrong_type", field_name)
        else:
            values[field_name] = raw if factor == 1 else raw / factor if factor > 0 else raw * -factor
    return name, values, unknown
