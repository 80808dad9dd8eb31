"""The firmware's CBOR encoder and decoder, run in the real micropython, against cbor2's canonical encoding."""
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
from cbor import dumps, loads, CborError
F = lambda h: struct.unpack('>d', bytes.fromhex(h))[0]
S = lambda h: str(bytes.fromhex(h), 'utf-8')
B = bytes.fromhex
"""


def mpy_literal(value) -> str:
    """MicroPython source that rebuilds `value` exactly (floats bit for bit, text via UTF-8)."""
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float):
        return f"F('{struct.pack('>d', value).hex()}')"
    if isinstance(value, str):
        return f"S('{value.encode().hex()}')"
    if isinstance(value, bytearray):
        return f"bytearray(B('{value.hex()}'))"
    if isinstance(value, bytes):
        return f"B('{value.hex()}')"
    if isinstance(value, tuple):
        return "(" + "".join(mpy_literal(v) + "," for v in value) + ")"
    if isinstance(value, list):
        return "[" + ",".join(mpy_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{mpy_literal(k)}:{mpy_literal(v)}" for k, v in value.items()) + "}"
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


def encode_in_micropython(values: list) -> list[str]:
    code = PRELUDE + "for v in [" + ",".join(mpy_literal(v) for v in values) + "]:\n    print(dumps(v).hex())\n"
    return run_micropython(code).split()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(VALUES, min_size=1, max_size=25))
def test_encoder_matches_cbor2_canonical(values):
    assert encode_in_micropython(values) == [cbor2.dumps(v, canonical=True).hex() for v in values]


@pytest.mark.parametrize("value, expected", [
    (0, "00"), (23, "17"), (24, "1818"), (255, "18ff"), (256, "190100"), (65536, "1a00010000"),
    (2**32, "1b0000000100000000"), (-1, "20"), (-24, "37"), (-25, "3818"), (-(2**64), "3bffffffffffffffff"),
    (1.0, "f93c00"), (65504.0, "f97bff"), (65520.0, "fa477ff000"), (2.0**-24, "f90001"), (1.1, "fb3ff199999999999a"),
    (float("inf"), "f97c00"), (float("-inf"), "f9fc00"), (-0.0, "f98000"),
    ({10: 1, 1: 2, -1: 3, "a": 4}, "a401020a012003616104"), ([1, (2,), b"\x00"], "83018102" "4100"),
])
def test_encoder_known_encodings(value, expected):
    assert cbor2.dumps(value, canonical=True).hex() == expected
    assert encode_in_micropython([value]) == [expected]


def test_encoder_rejects_what_cbor_without_tags_cannot_carry():
    out = run_micropython(PRELUDE + """
for v in (2**64, -(2**64) - 1, {1, 2}, object()):
    try:
        dumps(v)
        print('accepted')
    except CborError as e:
        print(e.reason)
""").split()
    assert out == ["int_too_big", "int_too_big", "unsupported_type", "unsupported_type"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(VALUES, min_size=1, max_size=25))
def test_decoder_reads_cbor2_output(values):
    # cbor2's default (non-canonical) output: unsorted maps, floats as doubles; decoded then re-encoded canonically.
    blobs = [cbor2.dumps(v).hex() for v in values]
    out = run_micropython(PRELUDE + "for h in " + repr(blobs) + ":\n    print(dumps(loads(B(h))).hex())\n").split()
    assert out == [cbor2.dumps(v, canonical=True).hex() for v in values]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.binary(min_size=0, max_size=24), min_size=1, max_size=60))
def test_decoder_on_arbitrary_bytes_returns_a_value_or_a_typed_error(blobs):
    out = run_micropython(PRELUDE + "for h in " + repr([b.hex() for b in blobs]) + """:
    try:
        print('ok', dumps(loads(B(h))).hex())
    except CborError as e:
        print('error', e.reason)
""").splitlines()
    assert len(out) == len(blobs)
    for blob, line in zip(blobs, out):
        verdict, detail = line.split(" ", 1)
        if verdict == "ok":
            assert detail == cbor2.dumps(cbor2.loads(blob), canonical=True).hex()
        elif detail == "truncated":
            with pytest.raises(cbor2.CBORDecodeError):
                cbor2.loads(blob)
        elif detail == "trailing_bytes":
            stream = io.BytesIO(blob)
            cbor2.CBORDecoder(stream).decode()
            assert stream.tell() < len(blob)


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
