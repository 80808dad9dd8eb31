"""cbor.encode_reading in micropython with the generated table firmware/schema_v1.py gives exactly the bytes of the CPython
schema codec (dos_codecs.schema Schema.encode), and stays within its allocation budget."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dos_codecs.schema import available_kinds, load_schema
from firmware_support import run_micropython

KINDS = available_kinds(1)


def field_values(spec):
    if spec.type == "bool":
        return st.booleans()
    ints = st.integers(min_value=int(spec.min), max_value=int(spec.max))
    floats = st.floats(min_value=spec.min, max_value=spec.max, allow_nan=False, allow_infinity=False)
    return st.one_of(ints, floats)


@st.composite
def readings(draw):
    """(kind, message name, values) for a routine message of some kind, each field present or not."""
    kind = draw(st.sampled_from(KINDS))
    message = draw(st.sampled_from(load_schema(kind).messages))
    values = {}
    for spec in message.fields:
        if draw(st.booleans()) or len(message.fields) == 1:
            values[spec.name] = draw(field_values(spec))
    return kind, message.name, values


def mpy_values(values: dict) -> str:
    """Python source for the dict (floats via repr, which round-trips exactly in MicroPython's double build)."""
    return "{" + ",".join(f"{name!r}: {value!r}" for name, value in values.items()) + "}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(readings(), min_size=1, max_size=20))
def test_encode_reading_matches_the_schema_codec(batch):
    code = "from cbor import encode_reading\n" + "".join(
        f"fport, payload = encode_reading({kind!r}, {message!r}, {mpy_values(values)})\nprint(fport, payload.hex())\n"
        for kind, message, values in batch)
    out = run_micropython(code).splitlines()
    expected = []
    for kind, message, values in batch:
        schema = load_schema(kind)
        expected.append(f"{schema.message(message).fport} {schema.encode(message, values).hex()}")
    assert out == expected


def test_unknown_kind_field_and_negative_uint_are_typed_errors():
    out = run_micropython("""
from cbor import encode_reading, CborError
for args in (('lamppost', 'reading', {}), ('streetlight', 'reading', {'colour': 1}),
             ('streetlight', 'reading', {'power': -3.0})):
    try:
        encode_reading(*args)
        print('accepted')
    except CborError as e:
        print(e.reason)
""").split()
    assert out == ["unknown_message", "unknown_field", "negative_uint"]


def test_a_routine_reading_allocates_at_most_512_bytes():
    out = run_micropython("""
import gc, json
from cbor import encode_reading
values = {'lamp_on': True, 'dim_level': 80, 'power': 35.5, 'energy': 123456.7, 'ambient_light': 12, 'battery': 3.71}
encode_reading('streetlight', 'reading', values)  # first call imports the table
gc.collect()
gc.disable()
before = gc.mem_alloc()
fport, payload = encode_reading('streetlight', 'reading', values)
allocated = gc.mem_alloc() - before
gc.enable()
print(json.dumps([allocated, fport, payload.hex()]))
""")
    allocated, fport, payload = json.loads(out)
    assert allocated <= 512, f"one reading allocated {allocated} bytes"
    values = {"lamp_on": True, "dim_level": 80, "power": 35.5, "energy": 123456.7, "ambient_light": 12, "battery": 3.71}
    assert (fport, payload) == (1, load_schema("streetlight").encode("reading", values).hex())
