"""cbor.encode_reading in micropython with the generated table firmware/schema_v1.py gives exactly the bytes of the
CPython schema codec (dos_codecs.schema Schema.encode), and stays within its allocation budget; every kind's routine
reading, as its app sends it (slow fields taking turns, apps.runtime.fit_reading), stays within 24 bytes, every field
at its extreme included."""
from __future__ import annotations

import json

import cbor2
import pytest
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


def test_every_integer_width_encodes_shortest_and_past_64_bits_is_a_typed_error():
    """Each CBOR head width (1, 2, 3, 5, 9 bytes) at its edges, through a factor-1 uint field (its range aside)."""
    spec = next(f for f in load_schema("streetlight").message("reading").fields if f.name == "energy")
    edges = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, 2**64]
    out = run_micropython(f"""
from cbor import encode_reading, CborError
for n in {edges!r}:
    try:
        print(encode_reading('streetlight', 'reading', {{'energy': n}})[1].hex())
    except CborError as e:
        print(e.reason)
""").split()
    assert out == [cbor2.dumps({spec.key: n}).hex() for n in edges[:-1]] + ["int_too_big"]


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


# ---- every kind's routine reading within 24 bytes, as its app sends it

MAX_READING_BYTES = 24


def largest_values(kind: str) -> dict:
    """The reading with every field at the end of its range whose encoding takes the most bytes."""
    schema = load_schema(kind)
    values = {}
    for spec in schema.message("reading").fields:
        if spec.type == "bool":
            values[spec.name] = True
        else:
            values[spec.name] = max((spec.min, spec.max),
                                    key=lambda v: len(schema.encode("reading", {spec.name: v})))
    return values


SENT_AS_THE_APP_DOES = """
import json
from apps.runtime import fit_reading
from cbor import encode_reading
import apps.{kind} as app

slow = getattr(app, "SLOW_FIELDS", None)  # an app without slow fields sends every field every time
for values in {batches!r}:
    first = 0
    for _ in range(2 * len(slow or ()) + 1):
        sent = values
        if slow is not None:
            sent, first = fit_reading({kind!r}, values, slow, first)
        fport, payload = encode_reading({kind!r}, "reading", sent)
        print(json.dumps([sorted(sent), payload.hex()]))
"""


def sent_readings(kind: str, batches: list[dict]) -> list[tuple[list[str], bytes]]:
    code = SENT_AS_THE_APP_DOES.format(kind=kind, batches=[{k: v for k, v in b.items()} for b in batches])
    return [(names, bytes.fromhex(payload)) for names, payload in map(json.loads, run_micropython(code).splitlines())]


@pytest.mark.parametrize("kind", KINDS)
def test_routine_readings_with_every_field_at_its_extreme_stay_within_24_bytes(kind):
    values = largest_values(kind)
    sent = sent_readings(kind, [values])
    everything = len(load_schema(kind).encode("reading", values))
    print(f"{kind}: every field at its largest takes {everything} bytes")
    assert all(len(payload) <= MAX_READING_BYTES for _names, payload in sent), [len(p) for _n, p in sent]
    # the fields that take turns still all get their turn
    assert set().union(*(set(names) for names, _payload in sent)) == set(values)
    for names, payload in sent:
        decoded = load_schema(kind).decode(1, payload)
        assert decoded.warnings == [] and set(decoded.readings) == set(names)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_routine_readings_with_any_values_stay_within_24_bytes(data):
    kind = data.draw(st.sampled_from(KINDS))
    fields = load_schema(kind).message("reading").fields
    batches = [{spec.name: data.draw(field_values(spec)) for spec in fields} for _ in range(3)]
    for names, payload in sent_readings(kind, batches):
        assert len(payload) <= MAX_READING_BYTES, (kind, names)
