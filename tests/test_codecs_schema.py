"""Payload schemas: strict file validation, CBOR decode/encode with scaling, rejects and warnings, fuzzing."""

from __future__ import annotations

import math
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dos_codecs.errors import CodecError, PayloadError, SchemaError
from dos_codecs.schema import Field, available_kinds, load_schema, parse_schema

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "codecs" / "schema" / "v1"
KINDS = sorted(path.stem for path in SCHEMA_DIR.glob("*.toml"))


def test_every_schema_file_loads() -> None:
    assert KINDS and available_kinds(1) == KINDS
    for kind in KINDS:
        schema = load_schema(kind)
        assert (schema.kind, schema.version) == (kind, 1)
        assert schema.messages and all(message.fields for message in schema.messages)
    assert available_kinds(99) == []


def test_unknown_kind() -> None:
    with pytest.raises(SchemaError) as info:
        load_schema("lamppost")
    assert info.value.reason == "unknown_kind"
    with pytest.raises(SchemaError):
        load_schema("../streetlight")


def test_decode_scales_to_nice_numbers() -> None:
    schema = load_schema("streetlight")
    decoded = schema.decode(1, cbor2.dumps({1: True, 3: 355, 4: 123456, 6: 371}))
    assert (decoded.kind, decoded.version, decoded.message) == ("streetlight", 1, "reading")
    assert decoded.readings == {
        "lamp_on": {"value": True, "unit": ""},
        "power": {"value": 35.5, "unit": "W"},
        "energy": {"value": 123456, "unit": "Wh"},
        "battery": {"value": 3.71, "unit": "V"},
    }
    assert repr(decoded.readings["power"]["value"]) == "35.5"
    assert decoded.warnings == []


def test_negative_scaled_values() -> None:
    decoded = load_schema("bridge").decode(1, cbor2.dumps({7: -1234, 9: -400, 1: -5000}))
    assert decoded.readings["tilt"]["value"] == -12.34
    assert decoded.readings["temperature"]["value"] == -40.0
    assert decoded.readings["strain_1"] == {"value": -5000, "unit": "µε"}


def test_unknown_key_and_out_of_range_give_warnings() -> None:
    decoded = load_schema("streetlight").decode(1, cbor2.dumps({3: 5000, 23: 1, 2: 100}))
    assert decoded.readings == {"dim_level": {"value": 100, "unit": "%"}, "power": {"value": 500.0, "unit": "W"}}
    assert len(decoded.warnings) == 2
    assert "power" in decoded.warnings[0] and "out of range" in decoded.warnings[0] and "400" in decoded.warnings[0]
    assert "unknown key 23" in decoded.warnings[1]


def test_empty_map_is_a_valid_payload() -> None:
    decoded = load_schema("waste").decode(1, b"\xa0")
    assert decoded.readings == {} and decoded.warnings == []


@pytest.mark.parametrize(
    ("fport", "payload", "reason"),
    [
        (1, b"", "bad_cbor"),
        (1, b"\xff", "bad_cbor"),
        (1, b"\xa1\x01", "bad_cbor"),
        (1, b"\xa2\x01\x01\x01\x02", "bad_cbor"),  # duplicate key
        (1, cbor2.dumps({1: True}) + b"\x00", "trailing_bytes"),
        (1, cbor2.dumps([1, 2]), "not_a_map"),
        (1, cbor2.dumps(7), "not_a_map"),
        (1, cbor2.dumps({"power": 3}), "bad_key"),
        (1, cbor2.dumps({-1: 3}), "bad_key"),
        (1, cbor2.dumps({True: 3}), "bad_key"),
        (1, cbor2.dumps({3: 35.5}), "bad_value_type"),
        (1, cbor2.dumps({3: -1}), "bad_value_type"),
        (1, cbor2.dumps({3: True}), "bad_value_type"),
        (1, cbor2.dumps({1: 1}), "bad_value_type"),
        (1, cbor2.dumps({3: "35"}), "bad_value_type"),
        (1, cbor2.dumps({3: None}), "bad_value_type"),
        (9, cbor2.dumps({1: True}), "unknown_fport"),
    ],
)
def test_decode_rejects(fport: int, payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        load_schema("streetlight").decode(fport, payload)
    assert info.value.reason == reason


def _raw_bounds(spec: Field) -> tuple[int, int]:
    if spec.divisor is not None:
        return math.ceil(spec.min * spec.divisor - 1e-9), math.floor(spec.max * spec.divisor + 1e-9)
    return math.ceil(spec.min / spec.multiplier), math.floor(spec.max / spec.multiplier)


@settings(max_examples=200)
@given(st.sampled_from(KINDS), st.data())
def test_encode_decode_gives_values_back_at_the_schema_resolution(kind: str, data: st.DataObject) -> None:
    schema = load_schema(kind)
    message = data.draw(st.sampled_from(schema.messages))
    values: dict[str, object] = {}
    for spec in message.fields:
        if not data.draw(st.booleans()):
            continue
        if spec.type == "bool":
            values[spec.name] = data.draw(st.booleans())
        else:
            low, high = _raw_bounds(spec)
            raw = data.draw(st.integers(low, high))
            values[spec.name] = raw / spec.divisor if spec.divisor else raw * spec.multiplier
    payload = schema.encode(message.name, values)
    decoded = schema.decode(message.fport, payload, message.direction)
    assert {name: reading["value"] for name, reading in decoded.readings.items()} == values
    assert decoded.warnings == []
    raw_map = cbor2.loads(payload)
    assert list(raw_map) == sorted(raw_map)
    assert cbor2.dumps(raw_map, canonical=True) == payload


@settings(max_examples=200)
@given(st.sampled_from(KINDS), st.data())
def test_encode_rounds_any_value_to_the_nearest_step(kind: str, data: st.DataObject) -> None:
    schema = load_schema(kind)
    message = schema.messages[0]
    spec = data.draw(st.sampled_from([f for f in message.fields if f.type != "bool"]))
    value = data.draw(st.floats(spec.min, spec.max))
    decoded = schema.decode(message.fport, schema.encode(message.name, {spec.name: value}))
    step = 1 / spec.divisor if spec.divisor else spec.multiplier
    assert abs(decoded.readings[spec.name]["value"] - value) <= step / 2 + 1e-9


def test_encoded_bytes_are_canonical_cbor() -> None:
    payload = load_schema("streetlight").encode("reading", {"power": 35.5, "lamp_on": True, "battery": 3.71})
    assert payload == bytes.fromhex("a3" "01f5" "03190163" "06190173")


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"wattage": 3}, "unknown_field"),
        ({"lamp_on": 1}, "bad_value_type"),
        ({"power": "35"}, "bad_value_type"),
        ({"power": True}, "bad_value_type"),
        ({"power": float("nan")}, "bad_value_type"),
        ({"power": 400.5}, "out_of_range"),
        ({"power": -0.1}, "out_of_range"),
    ],
)
def test_encode_rejects(values: dict, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        load_schema("streetlight").encode("reading", values)
    assert info.value.reason == reason


def test_encode_unknown_message() -> None:
    with pytest.raises(PayloadError) as info:
        load_schema("streetlight").encode("status", {})
    assert info.value.reason == "unknown_message"


def _decodes_or_rejects(kind: str, payload: bytes) -> None:
    schema = load_schema(kind)
    try:
        decoded = schema.decode(1, payload)
    except CodecError as exc:
        assert isinstance(exc, PayloadError) and exc.reason
        return
    names = {spec.name for spec in schema.messages[0].fields}
    assert set(decoded.readings) <= names


@settings(max_examples=300)
@given(st.sampled_from(KINDS), st.binary(max_size=40))
def test_random_bytes_decode_or_give_a_payload_error(kind: str, payload: bytes) -> None:
    _decodes_or_rejects(kind, payload)


CBOR_TAG_PREFIXES = [b"", b"\xa1\x01", b"\xa1\x01\xc0", b"\xa1\x01\xc1", b"\xa1\x01\xc2", b"\xa1\x01\xc4",
                     b"\xa1\x01\xd8\x1e", b"\xa1\x01\xd8\x23", b"\xa1\x01\xd9\x01\x02", b"\xa1\x01\xd9\x01\x04",
                     b"\xa1\x01\xd8\x1c", b"\xa1\x01\xd8\x1d", b"\xa2\x03", b"\xa1\xc0", b"\xbf\x01"]


@settings(max_examples=300)
@given(st.sampled_from(KINDS), st.sampled_from(CBOR_TAG_PREFIXES), st.binary(max_size=20))
def test_map_headers_and_tags_with_garbage_decode_or_give_a_payload_error(kind, prefix, rest) -> None:
    _decodes_or_rejects(kind, prefix + rest)


cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.integers(-3, 30), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300)
@given(st.sampled_from(KINDS), st.dictionaries(st.integers(-2, 30) | st.text(max_size=3), cbor_values, max_size=6))
def test_well_formed_cbor_maps_decode_or_give_a_payload_error(kind, raw_map) -> None:
    _decodes_or_rejects(kind, cbor2.dumps(raw_map))


# --- schema file validation -------------------------------------------------------------------------------------------

VALID = """
kind = "lamp"
version = 1
title = "Lamp"

[[message]]
name = "reading"
fport = 1
direction = "up"

[[message.field]]
key = 1
name = "on"
type = "bool"
unit = ""

[[message.field]]
key = 2
name = "power"
type = "uint"
unit = "W"
scale = 0.1
min = 0
max = 400
"""


def test_valid_text_parses() -> None:
    schema = parse_schema(VALID, kind="lamp", version=1)
    power = schema.message("reading").by_name["power"]
    assert (power.key, power.divisor, power.multiplier, power.min, power.max) == (2, 10, None, 0, 400)


def test_integer_scale() -> None:
    schema = parse_schema(VALID.replace("scale = 0.1", "scale = 5"))
    assert schema.decode(1, cbor2.dumps({2: 7})).readings["power"]["value"] == 35
    assert schema.encode("reading", {"power": 36}) == cbor2.dumps({2: 7})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (VALID.replace("key = 2", "key = 1"), "duplicate_key"),
        (VALID.replace('name = "power"', 'name = "on"'), "duplicate_name"),
        (VALID.replace('type = "uint"', 'type = "float"'), "bad_type"),
        (VALID.replace("scale = 0.1", "scale = 0.2"), "bad_scale"),
        (VALID.replace("scale = 0.1", "scale = 0.15"), "bad_scale"),
        (VALID.replace("scale = 0.1", "scale = 0"), "bad_scale"),
        (VALID.replace("scale = 0.1", "scale = -10"), "bad_scale"),
        (VALID.replace("scale = 0.1", "scale = 2.0"), "bad_scale"),
        (VALID.replace("scale = 0.1", 'scale = "0.1"'), "bad_scale"),
        (VALID.replace("min = 0", "min = 500"), "bad_range"),
        (VALID.replace("min = 0", "min = -1"), "bad_range"),
        (VALID.replace("max = 400", 'max = "400"'), "bad_range"),
        (VALID.replace("max = 400\n", "max = 400\nmax = 500\n"), "bad_toml"),
        (VALID.replace('unit = "W"', 'unit = "W"\ncolour = "red"'), "unknown_entry"),
        (VALID.replace('unit = "W"\n', ""), "missing_entry"),
        (VALID.replace('unit = ""', 'unit = ""\nscale = 1'), "unknown_entry"),
        (VALID.replace("key = 2", "key = 256"), "bad_key"),
        (VALID.replace('name = "power"', 'name = "Power"'), "bad_name"),
        (VALID.replace("fport = 1", "fport = 0"), "bad_fport"),
        (VALID.replace("fport = 1", "fport = 224"), "bad_fport"),
        (VALID.replace("version = 1", "version = 0"), "bad_version"),
        (VALID + VALID[VALID.index("[[message]]"):].replace('"on"', '"on2"').replace('"power"', '"power2"'),
         "duplicate_name"),
        (VALID + VALID[VALID.index("[[message]]"):].replace('"reading"', '"status"'), "duplicate_fport"),
        (VALID.replace('direction = "up"', 'direction = "sideways"'), "bad_schema"),
        (VALID[: VALID.index("[[message]]")], "missing_entry"),
    ],
)
def test_broken_schema_files_are_rejected(text: str, reason: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse_schema(text, source="lamp.toml")
    assert info.value.reason == reason
    assert "lamp.toml" in str(info.value)


def test_kind_and_version_must_match_the_file_location() -> None:
    with pytest.raises(SchemaError) as info:
        parse_schema(VALID, kind="streetlight")
    assert info.value.reason == "kind_mismatch"
    with pytest.raises(SchemaError) as info:
        parse_schema(VALID, version=2)
    assert info.value.reason == "version_mismatch"


def test_same_fport_in_both_directions_is_allowed() -> None:
    down = VALID[VALID.index("[[message]]"):].replace('"reading"', '"command"').replace('"up"', '"down"')
    schema = parse_schema(VALID + down)
    assert schema.message_for_fport(1, "down").name == "command"
    assert schema.decode(1, cbor2.dumps({1: False}), "down").message == "command"
