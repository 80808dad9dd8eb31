"""The exported JavaScript codecs (`dos-edge codec export`), run in node, give what the Python codec gives: on the YAML
examples, on payloads the real firmware encoder built in micropython, on hypothesis readings and on malformed bytes."""
from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import cbor2
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dos_agent.cli import main as cli_main
from dos_codecs.export import decode_result, encode_result, raw_payload
from dos_codecs.schema import Field, available_kinds, load_schema
from firmware_support import run_micropython

KINDS = available_kinds()
NODE = "/usr/bin/node"
# Loads a codec file into a fresh vm context (no require, no module scope, as in ChirpStack or TTS) and calls one
# function on each input of a JSON list read from stdin.
RUNNER = """
const vm = require("vm"), fs = require("fs");
const context = vm.createContext({});
vm.runInContext(fs.readFileSync(process.argv[1], "utf8"), context);
const inputs = JSON.parse(fs.readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(inputs.map(function (input) { return context[process.argv[2]](input); })));
"""


def run_js(codec: Path, function: str, inputs: list[dict]) -> list[dict]:
    done = subprocess.run([NODE, "-e", RUNNER, str(codec), function], input=json.dumps(inputs), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    folders = {}
    for fmt in ("ttn", "chirpstack"):
        folder = tmp_path_factory.mktemp(fmt)
        assert cli_main(["codec", "export", "--format", fmt, "--out", str(folder)]) == 0
        folders[fmt] = folder
    return folders


def numbers_as_floats(result: dict) -> dict:
    """The result with every reading's number as a float: JavaScript numbers are doubles, so an integer past 2^53
    arrives as its nearest double (the warning text keeps it exact); below that the float is exact anyway."""
    copy = json.loads(json.dumps(result))
    for reading in copy.get("data", {}).get("readings", {}).values():
        if not isinstance(reading["value"], bool):
            reading["value"] = float(reading["value"])
    return copy


def same_result(js: dict, python: dict) -> None:
    """JS result == Python result: data values (as doubles), units, warnings text, errors."""
    assert numbers_as_floats(js) == numbers_as_floats(python)


def decode_all(folder: Path, kind: str, cases: list[tuple[int, bytes]], direction: str = "up") -> None:
    schema = load_schema(kind)
    function = "decodeUplink" if direction == "up" else "decodeDownlink"
    results = run_js(folder / f"{kind}.js", function, [{"fPort": p, "bytes": list(b)} for p, b in cases])
    for (fport, payload), js in zip(cases, results, strict=True):
        python = decode_result(schema, fport, payload, direction)
        assert numbers_as_floats(js) == numbers_as_floats(python), (fport, payload.hex())


def test_export_writes_one_codec_per_kind(exported):
    ttn = sorted(p.name for p in exported["ttn"].iterdir())
    assert ttn == sorted([f"{k}.js" for k in KINDS] + [f"{k}.yaml" for k in KINDS])
    chirpstack = sorted(p.name for p in exported["chirpstack"].iterdir())
    assert chirpstack == sorted([f"{k}.js" for k in KINDS] + ["README.md"])
    readme = (exported["chirpstack"] / "README.md").read_text(encoding="utf-8")
    for kind in KINDS:
        assert f"`{kind}.js`" in readme
        code = (exported["ttn"] / f"{kind}.js").read_text(encoding="utf-8").split("*/", 1)[1]  # after the header
        for forbidden in ("require(", "import ", "export ", "=>", "let ", "const ", "`"):
            assert forbidden not in code, (kind, forbidden)


def test_cli_rejects_unknown_format(tmp_path):
    assert cli_main(["codec", "export", "--format", "lorawan", "--out", str(tmp_path)]) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_yaml_examples_hold_in_javascript(exported, kind):
    folder = exported["ttn"]
    doc = yaml.safe_load((folder / f"{kind}.yaml").read_text(encoding="utf-8"))
    schema = load_schema(kind)
    up = doc["uplinkDecoder"]["examples"]
    descriptions = " ".join(e["description"] for e in up)
    for needed in ("normal", "above its range", "unknown key", "truncated", "unknown FPort"):
        assert needed in descriptions
    assert any(e["output"].get("warnings") for e in up) and any("errors" in e["output"] for e in up)
    for section, function in (("uplinkDecoder", "decodeUplink"), ("downlinkDecoder", "decodeDownlink"),
                              ("downlinkEncoder", "encodeDownlink")):
        examples = doc[section]["examples"]
        assert examples and doc[section]["fileName"] == f"{kind}.js"
        results = run_js(folder / f"{kind}.js", function, [e["input"] for e in examples])
        for example, js in zip(examples, results, strict=True):
            assert js == example["output"], example["description"]
            if section == "uplinkDecoder":  # the example's output is the Python decoder's
                payload = bytes(example["input"]["bytes"])
                assert example["output"] == decode_result(schema, example["input"]["fPort"], payload)


# --- payloads from the real firmware encoder (micropython) ------------------------------------------------------------


def firmware_value_sets(spec: Field) -> list[object]:
    """Per field: bottom, top, middle, a value just past the top and (signed fields) below the bottom."""
    if spec.type == "bool":
        return [False, True, True]
    step = spec.value_of(1)
    values = [spec.min, spec.max, (spec.min + spec.max) / 2, spec.max + step * 3]
    if spec.type == "int":
        values.append(spec.min - step * 7)
    return values


def test_firmware_payloads_decode_the_same_in_javascript(exported):
    jobs = []
    for kind in KINDS:
        message = load_schema(kind).message("reading")
        sets = {spec.name: firmware_value_sets(spec) for spec in message.fields}
        for index in range(5):
            values = {name: options[index % len(options)] for name, options in sets.items()}
            jobs.append((kind, values))
        jobs.append((kind, {message.fields[-1].name: sets[message.fields[-1].name][1]}))
    code = "from cbor import encode_reading\n" + "".join(
        f"fport, payload = encode_reading({kind!r}, 'reading', {values!r})\nprint(fport, payload.hex())\n"
        for kind, values in jobs)
    lines = run_micropython(code).split("\n")
    by_kind: dict[str, list[tuple[int, bytes]]] = {}
    for (kind, _values), line in zip(jobs, lines, strict=False):
        fport, payload = line.split()
        by_kind.setdefault(kind, []).append((int(fport), bytes.fromhex(payload)))
    assert sum(len(v) for v in by_kind.values()) == len(jobs)
    warned = 0
    for kind, cases in by_kind.items():
        decode_all(exported["ttn"], kind, cases)
        decode_all(exported["chirpstack"], kind, cases)
        warned += sum(bool(decode_result(load_schema(kind), p, b)["warnings"]) for p, b in cases)
    assert warned >= len(KINDS)  # the out-of-range sets did reach the decoders


# --- hypothesis: readings encoded by Python, malformed bytes, downlinks -----------------------------------------------


def raw_for(spec: Field) -> st.SearchStrategy:
    if spec.type == "bool":
        return st.booleans()
    low, high = spec.raw_of(spec.min), spec.raw_of(spec.max)
    span = max(high - low, 1)
    inside = st.integers(low, high)
    around = st.integers(low - span, high + span)
    if spec.type == "uint":
        around = around.map(abs)
    anywhere = st.integers(0, 2**64 - 1) if spec.type == "uint" else st.integers(-(2**64), 2**64 - 1)
    return st.one_of(inside, around, anywhere)


@st.composite
def reading_payloads(draw, kind: str) -> tuple[int, bytes]:
    schema = load_schema(kind)
    message = draw(st.sampled_from(schema.messages))
    chosen = draw(st.lists(st.sampled_from(message.fields), unique_by=lambda f: f.key))
    raws = {spec.key: draw(raw_for(spec)) for spec in chosen}
    if draw(st.booleans()):
        raws[draw(st.integers(max(f.key for f in message.fields) + 1, 2**64 - 1))] = draw(st.integers(-5, 5))
    if all(f.type != "bool" and f.min <= f.value_of(r) <= f.max or f.type == "bool"
           for f in chosen for r in [raws[f.key]]) and not draw(st.booleans()):
        payload = schema.encode(message.name, {f.name: f.value_of(raws[f.key]) for f in chosen})
    else:
        payload = raw_payload(raws)
    return message.fport, payload


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hypothesis_readings_decode_the_same(exported, kind, data):
    cases = data.draw(st.lists(reading_payloads(kind), min_size=1, max_size=40))
    ups = [(p, b) for p, b in cases if p in {m.fport for m in load_schema(kind).messages if m.direction == "up"}]
    downs = [(p, b) for p, b in cases if (p, b) not in ups]
    decode_all(exported["ttn"], kind, ups)
    decode_all(exported["ttn"], kind, downs, "down")


CBOR_ITEMS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=5),
              st.binary(max_size=5)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.integers(0, 30), children, max_size=3)),
    max_leaves=6)


@st.composite
def odd_payloads(draw) -> bytes:
    """Maps whose values are any CBOR, cut or with a byte changed, and plain random bytes."""
    item = draw(st.dictionaries(st.one_of(st.integers(-3, 30), st.booleans(), st.text(max_size=2)), CBOR_ITEMS,
                                max_size=4))
    payload = bytearray(cbor2.dumps(item))
    how = draw(st.sampled_from(["whole", "cut", "flip", "random"]))
    if how == "cut" and payload:
        del payload[draw(st.integers(0, len(payload) - 1)):]
    elif how == "flip" and payload:
        payload[draw(st.integers(0, len(payload) - 1))] = draw(st.integers(0, 255))
    elif how == "random":
        payload = bytearray(draw(st.binary(max_size=12)))
    return bytes(payload)


def tag_head(tag: int) -> bytes:
    """The CBOR head of semantic tag `tag`."""
    return cbor2.dumps(cbor2.CBORTag(tag, None))[:-1]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(odd_payloads(), min_size=1, max_size=40))
def test_malformed_and_odd_payloads_give_the_same_reason(exported, payloads):
    schema = load_schema("streetlight")
    results = run_js(exported["ttn"] / "streetlight.js", "decodeUplink", [{"fPort": 1, "bytes": list(p)}
                                                                        for p in payloads])
    for payload, js in zip(payloads, results, strict=True):
        python = decode_result(schema, 1, payload)
        refused_tag = re.search(r"semantic tag (\d+) is not read", js.get("errors", [""])[0])
        if refused_tag:  # documented: tags cbor2 turns into dates, decimals, ... are refused; the tag is there
            assert tag_head(int(refused_tag.group(1))) in payload
            continue
        if "errors" in python:
            assert "errors" in js, (payload.hex(), python, js)
            assert js["errors"][0].split(":")[0] == python["errors"][0].split(":")[0], payload.hex()
        else:
            same_result(js, python)


@pytest.mark.parametrize("payload, message", [
    ("a10361", "bad_cbor: payload is not CBOR: premature end of stream (expected to read at least 1 bytes, "
               "got 0 instead)"),
    ("a1035a000000050a", "bad_cbor: payload is not CBOR: premature end of stream (expected to read at least 4 bytes, "
                         "got 0 instead)"),
    ("a10181818181", "bad_cbor: payload is not CBOR: maximum container nesting depth (4) exceeded"),
    ("a10300000000", "trailing_bytes: 3 bytes after the CBOR item"),
    ("81a0", "not_a_map: payload is a CBOR list, not a map"),
    ("a1f501", "bad_key: map key True is not an unsigned int"),
    ("a12001", "bad_key: map key -1 is not an unsigned int"),
    ("a1036161", "bad_value_type: power (key 3) is str 'a', not uint"),
    ("a101f93c00", "bad_value_type: lamp_on (key 1) is float 1.0, not bool"),
    ("a103f97e00", "bad_value_type: power (key 3) is float nan, not uint"),
    ("a1034401020304", "bad_value_type: power (key 3) is bytes b'\\x01\\x02\\x03\\x04', not uint"),
    ("a201f401f5", "bad_cbor: payload is not CBOR: error decoding map: Duplicate map key: 1"),
    ("a103c34100", "bad_value_type: power (key 3) is int -1, not uint"),
])
def test_error_messages_match_python(exported, payload, message):
    python = decode_result(load_schema("streetlight"), 1, bytes.fromhex(payload))
    assert python == {"errors": [message], "warnings": []}
    assert run_js(exported["ttn"] / "streetlight.js", "decodeUplink",
                  [{"fPort": 1, "bytes": list(bytes.fromhex(payload))}]) == [python]


def test_huge_values_print_as_python_prints_them(exported):
    cases = [(1, raw_payload({3: 2**64 - 1, 4: 2**64 - 1, 99: 2**64 - 1})), (1, cbor2.dumps({6: 10**30}))]
    decode_all(exported["ttn"], "streetlight", cases)


def config_values(kind: str) -> st.SearchStrategy:
    message = load_schema(kind).message("config")

    def value(spec: Field) -> st.SearchStrategy:
        if spec.type == "bool":
            return st.booleans()
        step = spec.value_of(1)
        return st.one_of(st.integers(math.ceil(spec.min), math.floor(spec.max)),
                         st.floats(spec.min, spec.max).filter(lambda v: not v.is_integer()),
                         st.integers(int(spec.max) + 1, int(spec.max) + 1000).map(lambda v: v * step))

    return st.fixed_dictionaries({}, optional={spec.name: value(spec) for spec in message.fields})


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_encode_downlink_gives_the_python_bytes(exported, kind, data):
    schema = load_schema(kind)
    configs = data.draw(st.lists(config_values(kind), min_size=1, max_size=30))
    for fmt in ("ttn", "chirpstack"):
        results = run_js(exported[fmt] / f"{kind}.js", "encodeDownlink", [{"data": c} for c in configs])
        for config, js in zip(configs, results, strict=True):
            python = encode_result(schema, config)
            assert js == python, config
            if "bytes" in python:
                assert bytes(js["bytes"]) == schema.encode("config", config)
