"""Payload schemas (codecs/schema/v<N>/<kind>.toml): strict loading, the CBOR payload decoder and encoder.

A payload is a CBOR map of small unsigned int keys to raw values (ints, or bools for `bool` fields). The engineering
value is `raw * scale`; for a scale of 10^-n it is computed as `raw / 10^n` so that 355 at scale 0.1 reads 35.5.
"""

from __future__ import annotations

import functools
import io
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable

import cbor2

from dos_codecs.errors import PayloadError, SchemaError

FIELD_TYPES = ("uint", "int", "bool")
DIRECTIONS = ("up", "down")
MAX_FIELD_KEY = 255
MAX_CBOR_DEPTH = 4
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_SCHEMA_KEYS = {"kind", "version", "title", "description", "message"}
_MESSAGE_KEYS = {"name", "fport", "direction", "description", "field"}
_NUMERIC_FIELD_KEYS = {"key", "name", "type", "unit", "scale", "min", "max", "description", "cumulative"}
_BOOL_FIELD_KEYS = {"key", "name", "type", "unit", "description"}


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a message. For numeric fields `divisor` (10^n, scale < 1) or `multiplier` (scale >= 1) is set."""

    key: int
    name: str
    type: str
    unit: str
    scale: int | float | None
    min: int | float | None
    max: int | float | None
    description: str
    divisor: int | None
    multiplier: int | None
    #: a counter that only grows over the asset's life (e.g. energy): the agent continues it across device swaps
    cumulative: bool = False

    def value_of(self, raw: int | bool) -> int | float | bool:
        """The engineering value of a raw wire value."""
        if self.divisor is not None:
            return raw / self.divisor
        if self.multiplier is not None:
            return raw * self.multiplier
        return raw

    def raw_of(self, value: int | float | bool) -> int | bool:
        """The raw wire value of an engineering value, at the field's resolution."""
        if self.divisor is not None:
            return round(value * self.divisor)
        if self.multiplier is not None:
            return round(value / self.multiplier)
        return value

    def raw_type_ok(self, raw: object) -> bool:
        """Whether a decoded CBOR value has this field's wire type."""
        if self.type == "bool":
            return isinstance(raw, bool)
        if not isinstance(raw, int) or isinstance(raw, bool):
            return False
        return self.type == "int" or raw >= 0

    @property
    def unit_suffix(self) -> str:
        """The unit as it follows a number in a message (" W"), or nothing."""
        return f" {self.unit}" if self.unit else ""

    def in_range(self, value: int | float) -> bool:
        """Whether an engineering value is within [min, max]."""
        return self.min <= value <= self.max


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a node kind, told apart on the wire by its FPort."""

    name: str
    fport: int
    direction: str
    description: str
    fields: tuple[Field, ...]
    by_key: dict[int, Field] = field(repr=False, compare=False)
    by_name: dict[str, Field] = field(repr=False, compare=False)
    #: key -> (field, name, the Python type of its raw values, unsigned, divisor, multiplier, min, max, unit): what
    #: `Schema.decode` reads per value
    decode_table: dict[int, tuple] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table = {spec.key: (spec, spec.name, bool if spec.type == "bool" else int, spec.type == "uint", spec.divisor,
                            spec.multiplier, spec.min, spec.max, spec.unit)
                 for spec in self.fields}
        object.__setattr__(self, "decode_table", table)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded payload: `readings` is {field name: {"value": v, "unit": u}} for the fields present."""

    kind: str
    version: int
    message: str
    readings: dict[str, dict[str, object]]
    warnings: list[str]


@dataclass(frozen=True, slots=True)
class Schema:
    """The payload schema of one node kind at one version."""

    kind: str
    version: int
    title: str
    messages: tuple[Message, ...]
    #: (fport, direction) -> message
    by_port: dict[tuple[int, str], Message] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_port", {(m.fport, m.direction): m for m in self.messages})

    def message(self, name: str) -> Message:
        """The message called `name`; PayloadError 'unknown_message' if there is none."""
        for message in self.messages:
            if message.name == name:
                return message
        raise PayloadError("unknown_message", f"{self.kind} v{self.version} has no message {name!r}")

    def message_for_fport(self, fport: int, direction: str = "up") -> Message:
        """The message sent on `fport` in `direction`; PayloadError 'unknown_fport' if there is none."""
        for message in self.messages:
            if message.fport == fport and message.direction == direction:
                return message
        raise PayloadError(
            "unknown_fport", f"{self.kind} v{self.version} has no {direction}link message on FPort {fport}"
        )

    def decode(self, fport: int, payload: bytes, direction: str = "up") -> Decoded:
        """Decode a plaintext FRMPayload. Malformed CBOR, a non-map, trailing bytes, non-int keys, a value of the
        wrong type or an unknown FPort raise PayloadError; unknown keys and out-of-range values give warnings."""
        message = self.by_port.get((fport, direction)) or self.message_for_fport(fport, direction)
        raw_map = _load_cbor_map(bytes(payload))
        table = message.decode_table
        readings: dict[str, dict[str, object]] = {}
        warnings: list[str] = []
        for key in sorted(raw_map):
            raw = raw_map[key]
            row = table.get(key)
            if row is None:
                warnings.append(f"unknown key {key} ignored")
                continue
            spec, name, raw_type, unsigned, divisor, multiplier, low, high, unit = row
            if (type(raw) is not raw_type or (unsigned and raw < 0)) and not spec.raw_type_ok(raw):
                raise PayloadError(
                    "bad_value_type", f"{name} (key {key}) is {type(raw).__name__} {_short(raw)}, not {spec.type}"
                )
            if raw_type is bool:
                value = raw
            else:
                value = raw / divisor if divisor is not None else raw * multiplier if multiplier is not None else raw
                if not low <= value <= high:
                    warnings.append(f"{name} = {value}{spec.unit_suffix} is out of range [{low}, {high}]")
            readings[name] = {"value": value, "unit": unit}
        return Decoded(self.kind, self.version, message.name, readings, warnings)

    def encode(self, message_name: str, values: dict[str, int | float | bool]) -> bytes:
        """The canonical CBOR payload (keys ascending, shortest ints) of `values` {field name: engineering value};
        PayloadError for an unknown field, a value of the wrong type, or a value out of range."""
        message = self.message(message_name)
        raw_map: dict[int, int | bool] = {}
        for name, value in values.items():
            spec = message.by_name.get(name)
            if spec is None:
                raise PayloadError("unknown_field", f"{message.name} has no field {name!r}")
            if spec.type == "bool":
                if not isinstance(value, bool):
                    raise PayloadError("bad_value_type", f"{name} is a bool, not {type(value).__name__}")
                raw_map[spec.key] = value
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise PayloadError("bad_value_type", f"{name} is a number, not {_short(value)}")
            if not spec.in_range(value):
                raise PayloadError("out_of_range", f"{name} = {_number(value)} is out of range [{spec.min}, {spec.max}]")
            raw_map[spec.key] = spec.raw_of(value)
        return cbor2.dumps(dict(sorted(raw_map.items())), canonical=True)


def _number(value: int | float) -> str:
    """A number as JSON (and so the exported JavaScript codecs) shows it: an integral float without ".0"."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _load_cbor_map(payload: bytes) -> dict:
    stream = io.BytesIO(payload)
    try:
        obj = cbor2.CBORDecoder(stream, max_depth=MAX_CBOR_DEPTH, allow_duplicate_keys=False).decode()
    except cbor2.CBORError as exc:
        # cbor2 wraps every failure, its semantic tag decoders' (dates, decimals, ...) included, in CBORDecodeError.
        raise PayloadError("bad_cbor", f"payload is not CBOR: {exc}") from None
    if stream.tell() != len(payload):
        raise PayloadError("trailing_bytes", f"{len(payload) - stream.tell()} bytes after the CBOR item")
    if not isinstance(obj, dict):
        raise PayloadError("not_a_map", f"payload is a CBOR {type(obj).__name__}, not a map")
    for key in obj:
        if not isinstance(key, int) or isinstance(key, bool) or key < 0:
            raise PayloadError("bad_key", f"map key {_short(key)} is not an unsigned int")
    return obj


# --- schema files -----------------------------------------------------------------------------------------------------


def _fail(source: str, what: str, reason: str = "bad_schema") -> SchemaError:
    return SchemaError(reason, f"{source}: {what}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _check_keys(table: dict, allowed: set[str], required: set[str], source: str, where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise _fail(source, f"{where}: unknown entries {sorted(unknown)}", "unknown_entry")
    missing = required - set(table)
    if missing:
        raise _fail(source, f"{where}: missing {sorted(missing)}", "missing_entry")


def _scale_factors(scale: object, source: str, where: str) -> tuple[int | None, int | None]:
    """(divisor, multiplier) of a scale: 10^-n (n >= 1) gives divisor 10^n; a positive int gives multiplier."""
    if _is_int(scale):
        if scale <= 0:
            raise _fail(source, f"{where}: scale {scale} is not positive", "bad_scale")
        return None, scale
    if isinstance(scale, float) and 0 < scale < 1:
        for exponent in range(1, 10):
            if scale == float(f"1e-{exponent}"):
                return 10**exponent, None
    raise _fail(source, f"{where}: scale {scale!r} is neither 10^-n nor a positive int", "bad_scale")


def _parse_field(table: object, source: str, where: str) -> Field:
    if not isinstance(table, dict):
        raise _fail(source, f"{where}: a field is a table")
    ftype = table.get("type")
    if ftype not in FIELD_TYPES:
        raise _fail(source, f"{where}: type {ftype!r} is not one of {FIELD_TYPES}", "bad_type")
    if ftype == "bool":
        _check_keys(table, _BOOL_FIELD_KEYS, {"key", "name", "type", "unit"}, source, where)
    else:
        _check_keys(table, _NUMERIC_FIELD_KEYS, _NUMERIC_FIELD_KEYS - {"description", "cumulative"}, source, where)
    key, name, unit = table["key"], table["name"], table["unit"]
    if not _is_int(key) or not 0 <= key <= MAX_FIELD_KEY:
        raise _fail(source, f"{where}: key {key!r} is not an int 0..{MAX_FIELD_KEY}", "bad_key")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _fail(source, f"{where}: name {name!r} is not snake_case", "bad_name")
    if not isinstance(unit, str):
        raise _fail(source, f"{where}: unit {unit!r} is not a string")
    description = table.get("description", "")
    if not isinstance(description, str):
        raise _fail(source, f"{where}: description is not a string")
    if ftype == "bool":
        return Field(key, name, ftype, unit, None, None, None, description, None, None)
    divisor, multiplier = _scale_factors(table["scale"], source, f"{where} ({name})")
    low, high = table["min"], table["max"]
    if not _is_number(low) or not _is_number(high):
        raise _fail(source, f"{where} ({name}): min and max are numbers", "bad_range")
    if low > high:
        raise _fail(source, f"{where} ({name}): min {low} > max {high}", "bad_range")
    if ftype == "uint" and low < 0:
        raise _fail(source, f"{where} ({name}): a uint field cannot have min {low} < 0", "bad_range")
    cumulative = table.get("cumulative", False)
    if not isinstance(cumulative, bool):
        raise _fail(source, f"{where} ({name}): cumulative is true or false")
    return Field(key, name, ftype, unit, table["scale"], low, high, description, divisor, multiplier, cumulative)


def _parse_message(table: object, source: str, where: str) -> Message:
    if not isinstance(table, dict):
        raise _fail(source, f"{where}: a message is a table")
    _check_keys(table, _MESSAGE_KEYS, {"name", "fport", "direction", "field"}, source, where)
    name, fport, direction = table["name"], table["fport"], table["direction"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _fail(source, f"{where}: name {name!r} is not snake_case", "bad_name")
    if not _is_int(fport) or not 1 <= fport <= 223:
        raise _fail(source, f"{where} ({name}): FPort {fport!r} is not an application port 1..223", "bad_fport")
    if direction not in DIRECTIONS:
        raise _fail(source, f"{where} ({name}): direction {direction!r} is not up or down")
    description = table.get("description", "")
    if not isinstance(description, str):
        raise _fail(source, f"{where} ({name}): description is not a string")
    field_tables = table["field"]
    if not isinstance(field_tables, list) or not field_tables:
        raise _fail(source, f"{where} ({name}): no fields")
    fields = [_parse_field(t, source, f"{where} ({name}) field {i + 1}") for i, t in enumerate(field_tables)]
    by_key: dict[int, Field] = {}
    by_name: dict[str, Field] = {}
    for spec in fields:
        if spec.key in by_key:
            raise _fail(source, f"{where} ({name}): key {spec.key} used twice", "duplicate_key")
        if spec.name in by_name:
            raise _fail(source, f"{where} ({name}): field name {spec.name!r} used twice", "duplicate_name")
        by_key[spec.key] = by_name[spec.name] = spec
    ordered = tuple(sorted(fields, key=lambda spec: spec.key))
    return Message(name, fport, direction, description, ordered, by_key, by_name)


def parse_schema(text: str, source: str = "<schema>", kind: str | None = None, version: int | None = None) -> Schema:
    """Parse and strictly validate one schema file's text; SchemaError names the file (`source`) and the fault.
    `kind` and `version`, when given, must match the file's own (its name and folder)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(source, f"not TOML: {exc}", "bad_toml") from None
    _check_keys(doc, _SCHEMA_KEYS, {"kind", "version", "title", "message"}, source, "top level")
    if not isinstance(doc["kind"], str) or not _NAME.fullmatch(doc["kind"]):
        raise _fail(source, f"kind {doc['kind']!r} is not snake_case", "bad_name")
    if kind is not None and doc["kind"] != kind:
        raise _fail(source, f"kind {doc['kind']!r} does not match the file name {kind!r}", "kind_mismatch")
    if not _is_int(doc["version"]) or doc["version"] < 1:
        raise _fail(source, f"version {doc['version']!r} is not a positive int", "bad_version")
    if version is not None and doc["version"] != version:
        raise _fail(source, f"version {doc['version']} does not match the folder v{version}", "version_mismatch")
    if not isinstance(doc["title"], str) or not isinstance(doc.get("description", ""), str):
        raise _fail(source, "title and description are strings")
    message_tables = doc["message"]
    if not isinstance(message_tables, list) or not message_tables:
        raise _fail(source, "no messages")
    messages = tuple(_parse_message(t, source, f"message {i + 1}") for i, t in enumerate(message_tables))
    names = [m.name for m in messages]
    if len(set(names)) != len(names):
        raise _fail(source, f"message names used twice: {names}", "duplicate_name")
    ports = [(m.fport, m.direction) for m in messages]
    if len(set(ports)) != len(ports):
        raise _fail(source, f"an FPort is used twice in one direction: {ports}", "duplicate_fport")
    return Schema(doc["kind"], doc["version"], doc["title"], messages)


def _schema_folder(version: int) -> Traversable:
    return resources.files("dos_codecs") / "schema" / f"v{version}"


def available_kinds(version: int = 1) -> list[str]:
    """The node kinds that have a schema at `version`, sorted."""
    folder = _schema_folder(version)
    if not folder.is_dir():
        return []
    return sorted(entry.name.removesuffix(".toml") for entry in folder.iterdir() if entry.name.endswith(".toml"))


@functools.lru_cache(maxsize=None)
def load_schema(kind: str, version: int = 1) -> Schema:
    """The schema of node kind `kind` at `version` (cached); SchemaError 'unknown_kind' if there is no such file."""
    if not isinstance(kind, str) or not _NAME.fullmatch(kind):
        raise SchemaError("unknown_kind", f"no schema for kind {kind!r}")
    path = _schema_folder(version) / f"{kind}.toml"
    if not path.is_file():
        raise SchemaError("unknown_kind", f"no schema for kind {kind!r} at version {version}")
    return parse_schema(path.read_text(encoding="utf-8"), f"schema/v{version}/{kind}.toml", kind, version)
