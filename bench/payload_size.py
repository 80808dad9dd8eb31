"""Payload bytes per routine reading for each node kind, beside Cayenne LPP and a packed struct of the same
information, with the SF12 time on air of the whole uplink (never asserts; see bench/README.md).

- CBOR: what the firmware sends, encoded by the firmware itself in `micropython` (`cbor.encode_reading`; the slow
  fields of an app that has them chosen by `apps.runtime.fit_reading` within the 24-byte budget), checked equal to the
  codecs' canonical CBOR (`Schema.encode`) and decoded back by the agent's schema decoder.
- packed struct (the baseline): the same fields at the same resolution, each the smallest whole-byte integer that
  holds its raw range (struct format derived from the schema's min/max/scale), booleans as bits of one flags byte.
- Cayenne LPP: one `channel, type, value` entry per field, with the smallest LPP type (original IPSO set or the
  common extended one) that keeps the field's range and resolution; where none does, the 4-byte generic sensor type.

Each figure for a typical reading (values as the firmware apps produce them) and a worst case (every field at the end
of its range with the longest CBOR form). Time on air: EU868 SF12/125 kHz, CR 4/5, explicit header, CRC, LowDataRate
optimisation, PHYPayload = payload + 13 bytes (MHDR, DevAddr, FCtrl, FCnt, FPort, MIC; no FOpts).
Goal: CBOR's airtime <= 1.25 x the packed struct's.

Usage: python bench/payload_size.py
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dos_codecs.schema import Field, load_schema
from dos_rig.airtime import time_on_air_us

FIRMWARE_DIR = Path(__file__).resolve().parents[1] / "firmware"
AIRTIME_GOAL = 1.25
LORAWAN_OVERHEAD = 13  # MHDR 1 + DevAddr 4 + FCtrl 1 + FCnt 2 + FPort 1 + MIC 4
SF, BW_HZ = 12, 125_000


@dataclass(frozen=True)
class LppType:
    """A Cayenne LPP data type: id, value size in bytes, resolution (engineering units per count), signedness."""

    name: str
    type_id: int
    size: int
    resolution: float
    signed: bool


DIGITAL_INPUT = LppType("digital input", 0, 1, 1, False)
DIGITAL_OUTPUT = LppType("digital output", 1, 1, 1, False)
ANALOG_INPUT = LppType("analog input", 2, 2, 0.01, True)
ILLUMINANCE = LppType("illuminance", 101, 2, 1, False)
TEMPERATURE = LppType("temperature", 103, 2, 0.1, True)
VOLTAGE = LppType("voltage", 116, 2, 0.01, False)
FREQUENCY = LppType("frequency", 118, 4, 1, False)
PERCENTAGE = LppType("percentage", 120, 1, 1, False)
POWER = LppType("power", 128, 2, 1, False)
DISTANCE = LppType("distance", 130, 4, 0.001, False)
ENERGY = LppType("energy", 131, 4, 1, False)  # 0.001 kWh = 1 Wh
DIRECTION = LppType("direction", 132, 2, 1, False)
GENERIC = LppType("generic sensor", 100, 4, 1, True)  # a raw 32-bit count (two's complement): holds any field here

#: LPP types that mean the same physical quantity, by the schema's unit, smallest first.
LPP_BY_UNIT = {
    "%": (PERCENTAGE, ANALOG_INPUT),
    "W": (POWER, ANALOG_INPUT),
    "Wh": (ENERGY,),
    "lx": (ILLUMINANCE,),
    "V": (ANALOG_INPUT, VOLTAGE),
    "m": (ANALOG_INPUT, DISTANCE),
    "°C": (TEMPERATURE, ANALOG_INPUT),
    "°": (ANALOG_INPUT, DIRECTION),
    "g": (ANALOG_INPUT,),
    "Hz": (ANALOG_INPUT, FREQUENCY),
    "mm": (ANALOG_INPUT,),
    "µε": (ANALOG_INPUT,),
    "": (ANALOG_INPUT,),
}

#: Routine readings as the firmware apps measure them (the bridge app sends the slow fields that fit, in turn).
TYPICAL = {
    "streetlight": {"lamp_on": True, "dim_level": 70, "power": 35.5, "energy": 123456, "ambient_light": 12,
                    "battery": 3.61, "battery_low": False, "presence": 3},
    "waste": {"fill_level": 64, "distance": 0.412, "temperature": 12.3, "tilt": 2, "battery": 3.55,
              "battery_low": False},
    "bridge": {"strain_1": -120, "strain_2": 35, "strain_3": 8, "vibration_rms": 0.012, "vibration_peak": 0.045,
               "vibration_freq": 3.2, "tilt": 0.25, "crack_width": 1.2, "temperature": 9.5, "battery": 3.4,
               "battery_low": False},
}

#: Per line `[kind, values]` in, `[fport, payload hex, fields sent]` out: the app's own choice of fields
#: (apps.runtime.fit_reading with the app's SLOW_FIELDS, when it has them) and the firmware's CBOR encoder.
FIRMWARE_ENCODER = """
import sys, json, binascii
from cbor import encode_reading
from apps.runtime import fit_reading
for line in sys.stdin.buffer.read().decode().splitlines():
    kind, values = json.loads(line)
    app = getattr(__import__("apps." + kind), kind)
    slow_fields = getattr(app, "SLOW_FIELDS", None)
    if slow_fields:
        values = fit_reading(kind, values, slow_fields, 0)[0]
    fport, payload = encode_reading(kind, "reading", values)
    print(json.dumps([fport, binascii.hexlify(payload).decode(), sorted(values)]))
"""


def firmware_encode(readings: list[tuple[str, dict]]) -> list[tuple[int, bytes, list[str]]]:
    """(FPort, payload, fields sent) of each (kind, values) as the firmware encodes it, in the real micropython."""
    micropython = Path(sys.executable).with_name("micropython")
    done = subprocess.run([str(micropython), "-c", FIRMWARE_ENCODER], input="\n".join(map(json.dumps, readings)),
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, MICROPYPATH=str(FIRMWARE_DIR)))
    if done.returncode != 0:
        raise RuntimeError(f"the firmware encoder failed in micropython:\n{done.stdout}{done.stderr}")
    return [(fport, bytes.fromhex(hex_payload), names)
            for fport, hex_payload, names in map(json.loads, done.stdout.splitlines())]


def lpp_type(spec: Field) -> LppType:
    """The smallest LPP type for the field's quantity that keeps its range and resolution (else GENERIC)."""
    if spec.type == "bool":
        return DIGITAL_INPUT
    resolution = spec.scale
    for candidate in LPP_BY_UNIT.get(spec.unit, ()):
        top = (1 << (8 * candidate.size - int(candidate.signed))) * candidate.resolution
        fits = -top <= spec.min if candidate.signed else spec.min >= 0
        if candidate.resolution <= resolution + 1e-12 and fits and spec.max < top:
            return candidate
    return GENERIC


def lpp_encode(fields: list[Field], values: dict) -> bytes:
    """The Cayenne LPP frame of the values: channel (field order), type id, big-endian value per field."""
    out = bytearray()
    for channel, spec in enumerate(fields):
        if spec.name not in values:
            continue
        kind = lpp_type(spec)
        count = int(values[spec.name]) if spec.type == "bool" else round(values[spec.name] / kind.resolution)
        out += bytes((channel, kind.type_id)) + count.to_bytes(kind.size, "big", signed=kind.signed)
    return bytes(out)


def struct_format(fields: list[Field]) -> str:
    """The packed struct of the fields: a flags byte for the booleans, then each number as the smallest integer
    holding its raw range."""
    codes = ["<", "B"] if any(spec.type == "bool" for spec in fields) else ["<"]
    for spec in fields:
        if spec.type == "bool":
            continue
        low, high = spec.raw_of(spec.min), spec.raw_of(spec.max)
        signed = low < 0
        for code in ("bB", "hH", "iI", "qQ"):
            limit = 1 << (8 * struct.calcsize(code[0]) - int(signed))
            if -limit <= low and high < limit:
                codes.append(code[0] if signed else code[1])
                break
    return "".join(codes)


def struct_encode(fields: list[Field], values: dict) -> bytes:
    bools = [spec for spec in fields if spec.type == "bool"]
    flags = [sum(1 << i for i, spec in enumerate(bools) if values[spec.name])] if bools else []
    numbers = [spec.raw_of(values[spec.name]) for spec in fields if spec.type != "bool"]
    return struct.pack(struct_format(fields), *flags, *numbers)


def cbor_int_len(raw: int) -> int:
    magnitude = raw if raw >= 0 else -1 - raw
    return 1 if magnitude < 24 else 2 if magnitude < 256 else 3 if magnitude < 65536 else 5 if magnitude < 2**32 else 9


def worst_value(spec: Field) -> object:
    """The end of the field's range with the longest CBOR encoding."""
    if spec.type == "bool":
        return True
    return max((spec.min, spec.max), key=lambda v: cbor_int_len(spec.raw_of(v)))


def worst_reading(kind: str, fields: list[Field]) -> dict:
    return {spec.name: worst_value(spec) for spec in fields if spec.name in TYPICAL[kind]}


def airtime_ms(payload_len: int) -> float:
    return time_on_air_us(LORAWAN_OVERHEAD + payload_len, SF, BW_HZ) / 1000


def main() -> None:
    print(f"bytes per routine reading; SF{SF}/125 kHz time on air of the whole uplink (payload + {LORAWAN_OVERHEAD})")
    print(f"{'kind':<12}{'case':<9}{'CBOR':>6}{'LPP':>6}{'struct':>8}   {'CBOR ms':>8}{'LPP ms':>8}{'struct ms':>10}"
          f"   CBOR/struct airtime")
    missed = []
    cases = [(kind, case, values) for kind, typical in TYPICAL.items()
             for case, values in (("typical", typical),
                                  ("worst", worst_reading(kind, list(load_schema(kind).message("reading").fields))))]
    encoded = firmware_encode([(kind, values) for kind, _case, values in cases])
    for (kind, case, measured), (fport, cbor, sent) in zip(cases, encoded):
        schema = load_schema(kind)
        message = schema.message("reading")
        values = {name: measured[name] for name in sent}
        fields = [spec for spec in message.fields if spec.name in values]
        if fport != message.fport or cbor != schema.encode("reading", values):
            raise RuntimeError(f"{kind} {case}: the firmware's CBOR differs from the codecs' canonical CBOR")
        if set(schema.decode(fport, cbor).readings) != set(values):
            raise RuntimeError(f"{kind} {case}: the CBOR reading does not decode to its fields")
        lpp, packed = lpp_encode(fields, values), struct_encode(fields, values)
        times = [airtime_ms(len(p)) for p in (cbor, lpp, packed)]
        ratio = times[0] / times[2]
        if ratio > AIRTIME_GOAL:
            missed.append(f"{kind} {case}")
        print(f"{kind:<12}{case:<9}{len(cbor):>6}{len(lpp):>6}{len(packed):>8}   {times[0]:>8.1f}{times[1]:>8.1f}"
              f"{times[2]:>10.1f}   {ratio:.2f}" + ("  MISSED" if ratio > AIRTIME_GOAL else ""))
        generic = [spec.name for spec in fields if lpp_type(spec) is GENERIC]
        print(f"{'':<21}fields {', '.join(sent)}; struct {struct_format(fields)}"
              + (f"; LPP generic 4-byte for {', '.join(generic)} (no LPP type keeps their range/resolution)"
                 if generic else ""))
    print("CBOR encoded by the firmware in micropython, equal to the codecs' canonical CBOR, decoded back: yes")
    print(f"goal CBOR airtime <= {AIRTIME_GOAL:.2f} x packed struct's at SF12: "
          + ("met for every kind and case" if not missed else f"MISSED for {', '.join(missed)}"))


if __name__ == "__main__":
    main()
