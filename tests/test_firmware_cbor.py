"""The firmware's CBOR decoder (downlinks), run in the real micropython, against cbor2. The encoder, encode_reading, is
tested against the CPython schema codec in test_firmware_reading.py."""
from __future__ import annotations

import io
import struct

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_support import run_micropython

PRELUDE = """
import struct
from cbor import CborError
from cbor_decode import loads
B = bytes.fromhex


def show(v):
    t = type(v)
    if t is float:
        return 'f' + struct.pack('>d', v).hex()
    if t is str:
        return 's' + v.encode().hex()
    if t is bytes:
        return 'b' + v.hex()
    if t is list:
        return '[' + ','.join(show(x) for x in v) + ']'
    if t is dict:
        return '{' + ','.join(sorted(show(k) + ':' + show(x) for k, x in v.items())) + '}'
    return repr(v)
"""


def show(value) -> str:
    """The PRELUDE's show() in CPython: one text per decoded value, floats bit for bit, maps in a fixed order."""
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        return "f" + struct.pack(">d", value).hex()
    if isinstance(value, str):
        return "s" + value.encode().hex()
    if isinstance(value, bytes):
        return "b" + value.hex()
    if isinstance(value, list):
        return "[" + ",".join(show(x) for x in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(sorted(show(k) + ":" + show(x) for k, x in value.items())) + "}"
    raise TypeError(type(value))


INT64 = st.integers(min_value=-(2**64), max_value=2**64 - 1)
SMALL_INTS = st.one_of(st.integers(-30, 30), st.sampled_from([23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, -25, -257]))
TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30)
SCALARS = st.one_of(st.none(), st.booleans(), INT64, SMALL_INTS, st.floats(), st.binary(max_size=40),
                    st.binary(max_size=300).map(bytearray), TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.one_of(INT64, SMALL_INTS, TEXT), children, max_size=6)),
    max_leaves=20)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(VALUES, min_size=1, max_size=25), st.booleans())
def test_decoder_reads_cbor2_output(values, canonical):
    # cbor2's default output (unsorted maps, floats as doubles) and its canonical one (shortest floats, sorted maps)
    blobs = [cbor2.dumps(v, canonical=canonical) for v in values]
    out = run_micropython(PRELUDE + "for h in " + repr([b.hex() for b in blobs]) + ":\n    print(show(loads(B(h))))\n")
    assert out.split() == [show(cbor2.loads(blob)) for blob in blobs]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.binary(min_size=0, max_size=24), min_size=1, max_size=60))
def test_decoder_on_arbitrary_bytes_returns_a_value_or_a_typed_error(blobs):
    out = run_micropython(PRELUDE + "for h in " + repr([b.hex() for b in blobs]) + """:
    try:
        print('ok', show(loads(B(h))))
    except CborError as e:
        print('error', e.reason)
""").splitlines()
    assert len(out) == len(blobs)
    for blob, line in zip(blobs, out):
        verdict, detail = line.split(" ", 1)
        if verdict == "ok":
            assert detail == show(cbor2.loads(blob))
        elif detail == "truncated":
            with pytest.raises(cbor2.CBORDecodeError):
                cbor2.loads(blob)
        elif detail == "trailing_bytes":
            stream = io.BytesIO(blob)
            cbor2.CBORDecoder(stream).decode()
            assert stream.tell() < len(blob)


@pytest.mark.parametrize("blob, expected", [
    ("f93c00", 1.0), ("f97bff", 65504.0), ("fa477ff000", 65520.0), ("f90001", 2.0**-24), ("fb3ff199999999999a", 1.1),
    ("f97c00", float("inf")), ("f9fc00", float("-inf")), ("f98000", -0.0), ("3bffffffffffffffff", -(2**64)),
    ("1b0000000100000000", 2**32), ("a401020a012003616104", {10: 1, 1: 2, -1: 3, "a": 4}),
    ("f97c01", struct.unpack(">d", bytes.fromhex("7ff8040000000000"))[0]),  # a half NaN keeps its payload, as in cbor2
])
def test_decoder_known_encodings(blob, expected):
    assert run_micropython(PRELUDE + f"print(show(loads(B({blob!r}))))\n").strip() == show(expected)


def test_decoder_typed_errors():
    cases = {"": "truncated", "1a0001": "truncated", "0000": "trailing_bytes", "9f": "unsupported_length",
             "c100": "unsupported_tag", "62ffff": "bad_utf8",
             "62c080": "bad_utf8", "63eda080": "bad_utf8", "64f4908080": "bad_utf8", "63e08080": "bad_utf8",
             "62c2": "truncated", "61c2": "bad_utf8", "9b8000000000000000": "truncated", "bb8000000000000000": "truncated",
             "5b8000000000000000": "truncated", "8300": "truncated", "c600": "unsupported_tag", "f7": "unsupported_simple", "81" * 40 + "00": "too_deep",
             "a1810000": "unhashable_key"}
    out = run_micropython(PRELUDE + "for h in " + repr(list(cases)) + """:
    try:
        loads(B(h))
        print('accepted')
    except CborError as e:
        print(e.reason)
""").split()
    assert out == list(cases.values())
