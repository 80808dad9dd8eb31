"""Bus-level models of the emulated streetlight board's sensors and lamp, driven by a per-board scenario.

- BH1750 ambient light sensor (I2C 0x23): power on 0x01, continuous/one-time H-res 0x10/0x20 (raw = round(lux * 1.2)),
  H-res2 0x11/0x21 (twice that), MTreg commands, 2-byte big-endian reads. The value is available at once.
- INA219 power monitor (I2C 0x40): config, shunt voltage (10 µV), bus voltage (4 mV, bits 15-3, CNVR set), power and
  current computed as the chip does from the calibration register (0 until programmed), big-endian 16-bit registers at the
  register pointer. It measures the lamp: rated power * relay closed * PWM duty, at the scenario's bus voltage through a
  `shunt_ohm` shunt (0.1 ohm by default, as on the common breakout).
- Battery: ADC read_uv() sees the battery voltage through a 1:2 divider.

Served values are quantised first to the schema's resolution (lux integer, power 0.1 W, battery 0.01 V) and the registers are
chosen so the usual conversions give those values back exactly. Every value served goes to the sensor log as
{t_us, board, sensor, value}; reads of one sensor within 100 ms of virtual time that serve the same value are one measurement.

Scenario keys (all optional): lux (number, or {"day", "night", "sunrise_h", "sunset_h"} for a day/night curve over the
virtual UTC day), lamp_power_w (36.0), lamp_fails_at_s (None: never; else the virtual second from which the lamp draws
0 W whatever the relay and PWM say), bus_v (24.0), shunt_ohm (0.1), battery_v (3.70, or {"start", "per_day"}).

Sensor kits: `kit` ("streetlight") adds, for "waste" and "bridge", a TMP102 (I2C 0x48) and an ADXL345 (I2C 0x53, full
resolution 256 counts per g, tilt about the y axis); "waste" also an MB7040 ultrasonic ranger (I2C 0x70, cm),
"bridge" an HX711 bank (clock pin 13, data pins 34/38/39) and a crack gauge on ADC pin 36. Their keys:
- temperature_c (15.0): quantised to 0.1 °C, served in TMP102 counts of 0.0625 °C.
- tilt_deg (0.0): the resting tilt; the served counts are round(256 g-components); the logged tilt is what the node
  computes from them (waste: degrees from upright, integer; bridge: asin of x, 0.01°).
- waste: fill_pct (number, or {"start", "per_day", "after_pct"}), emptied_at_s (list of virtual seconds: the container
  is tipped to tip_deg (120) for emptying_s (60), and the fill restarts from after_pct), container_depth_m (1.2) and
  sensor_offset_m (0.1) (distance = offset + depth * (1 - fill), in whole cm), echo_outlier_every (0: never; N: every
  Nth ping reports a spurious 25 cm echo, logged as mb7040_outlier).
- bridge: strain_ue ([0, 0, 0], whole µε per channel, served as round(strain * strain_counts_per_ue (1073.74)) counts),
  crack_mm (0.0, 0.01 mm, served through crack_mm_per_v (10.0)), vibration ({"at_s", "duration_s", "freq_hz",
  "amplitude_g"} or None): a sine on z whose frequency is quantised to the bins of a 64-sample window at the ADXL345's
  output data rate and whose amplitude to whole counts (logged as sensor "vibration": {"freq_hz", "amplitude_g"}).
  strain_events (list of {"at_s", "duration_s", "peak_ue": [a, b, c]}): a load on the span (a heavy vehicle) adds
  peak_ue to strain_ue per channel for duration_s from at_s; crack_mm may also be {"start", "per_day"} (a growing
  crack).
- temperature_c may also be {"base", "fire_at_s", "rise_c_per_min", "max_c"}: base until fire_at_s, then rising by
  rise_c_per_min up to max_c (a fire in a waste container).
- streetlight: a PIR presence sensor on pin 33 (input, high while it senses someone): presence_at_s (list of virtual
  seconds), each holding the pin high for presence_hold_s (10); the rig raises the pin's IRQ on each edge and logs
  the level each read sees as sensor "pir".
- environment: a Sensirion SCD41 CO2 sensor (I2C 0x62, see SCD41 below) measuring co2_ppm (number, or a school-day
  curve {"outdoor_ppm", "lessons": [[start, end], ...] in virtual UTC hours or "HH:MM", "rise_ppm_per_min",
  "fall_ppm_per_min", "max_ppm"}: rising during lessons, falling towards outdoor_ppm in breaks), humidity_pct (45.0)
  and temperature_c (the same key as the TMP102's); logged as scd41_co2 (whole ppm), scd41_temperature (0.1 °C) and
  scd41_humidity (0.1 %).

Scenario time: the instants (`*_at_s`, `at_s`) and the elapsed time of the per_day and rise curves are virtual seconds
after the scenario's origin (0: the rig's start; `Scenario.set_origin` moves it, e.g. to when the fleet is up, and
`Scenario.hold` keeps scenario time at 0 until then); the lux and CO2 day curves follow the virtual UTC time of day
(the rig's epoch).
"""
from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Callable, Protocol

BH1750_ADDRESS = 0x23
INA219_ADDRESS = 0x40
BATTERY_DIVIDER = 2
ADC_FULL_SCALE_UV = 3_300_000
MEASUREMENT_WINDOW_US = 100_000

DEFAULT_SCENARIO = {"lux": 250, "lamp_power_w": 36.0, "lamp_fails_at_s": None, "bus_v": 24.0, "shunt_ohm": 0.1,
                    "battery_v": 3.70}
KIT_SCENARIO = {"kit": "streetlight", "temperature_c": 15.0, "tilt_deg": 0.0, "fill_pct": 0, "emptied_at_s": [],
                "tip_deg": 120, "emptying_s": 60, "container_depth_m": 1.2, "sensor_offset_m": 0.1,
                "echo_outlier_every": 0, "strain_ue": [0, 0, 0], "strain_counts_per_ue": 1073.74, "crack_mm": 0.0,
                "crack_mm_per_v": 10.0, "vibration": None, "strain_events": [], "presence_at_s": [],
                "presence_hold_s": 10, "co2_ppm": 420, "humidity_pct": 45.0}
KITS = ("streetlight", "waste", "bridge", "environment")
TMP102_ADDRESS, ADXL345_ADDRESS, MB7040_ADDRESS, SCD41_ADDRESS = 0x48, 0x53, 0x70, 0x62
PIN_CRACK_GAUGE, PIN_PIR = 36, 33
ACCEL_COUNTS_PER_G = 256
VIBRATION_WINDOW = 64  # samples of the node's vibration window: event frequencies are quantised to its bins


# The keys a curve (a dict in place of a number) or an event may have: (allowed, required).
CURVE_KEYS = {"lux": ({"day", "night", "sunrise_h", "sunset_h"}, set()),
              "battery_v": ({"start", "per_day"}, set()),
              "fill_pct": ({"start", "per_day", "after_pct"}, set()),
              "crack_mm": ({"start", "per_day"}, set()),
              "temperature_c": ({"base", "fire_at_s", "rise_c_per_min", "max_c"}, set()),
              "co2_ppm": ({"outdoor_ppm", "lessons", "rise_ppm_per_min", "fall_ppm_per_min", "max_ppm"}, set()),
              "vibration": ({"at_s", "duration_s", "freq_hz", "amplitude_g"}, {"at_s", "duration_s", "freq_hz",
                                                                              "amplitude_g"})}
EVENT_KEYS = {"strain_events": ({"at_s", "duration_s", "peak_ue"}, {"at_s", "duration_s", "peak_ue"})}
OPTIONAL_KEYS = {"lamp_fails_at_s", "vibration"}  # None: never


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_keys(where: str, spec: dict, allowed: set, required: set) -> None:
    unknown, missing = set(spec) - allowed, required - set(spec)
    if unknown or missing:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}, missing {sorted(missing)}; "
                         f"allowed: {sorted(allowed)}")


def check_scenario_value(key: str, value) -> None:
    """ValueError naming the key when value is not of the kind its default is (a number, a list of numbers, a curve
    with known keys, a list of events with their keys)."""
    default = {**DEFAULT_SCENARIO, **KIT_SCENARIO}[key]
    if value is None and key in OPTIONAL_KEYS:
        return
    if isinstance(value, dict) and key in CURVE_KEYS:
        _check_keys(key, value, *CURVE_KEYS[key])
        for lesson in value.get("lessons", []):
            try:
                start, end = (hours(t) for t in lesson)
            except (TypeError, ValueError):
                raise ValueError(f"{key}: a lesson is [start, end] in hours or \"HH:MM\", got {lesson!r}") from None
            if not 0 <= start < end <= 24:
                raise ValueError(f"{key}: lesson {lesson!r} does not run forward within a day")
        return
    if key in EVENT_KEYS:
        if not isinstance(value, list) or not all(isinstance(event, dict) for event in value):
            raise ValueError(f"{key}: expected a list of tables")
        for event in value:
            _check_keys(key, event, *EVENT_KEYS[key])
        return
    if isinstance(default, list) or key in ("emptied_at_s", "presence_at_s"):
        if not isinstance(value, list) or not all(_is_number(v) for v in value):
            raise ValueError(f"{key}: expected a list of numbers, got {value!r}")
        return
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected a string, got {value!r}")
        return
    if not _is_number(value):
        curve = " or a table" if key in CURVE_KEYS else ""
        raise ValueError(f"{key}: expected a number{curve}, got {value!r}")


def hours(time_of_day: float | str) -> float:
    """Hours of the day from a number of hours or an "HH:MM" string."""
    if isinstance(time_of_day, str):
        hh, _, mm = time_of_day.partition(":")
        return int(hh) + int(mm or 0) / 60
    return float(time_of_day)


class Scenario:
    """What the board's environment and hardware are like over virtual time."""

    def __init__(self, values: dict | None = None, epoch_s: int = 0):
        self.values = {**DEFAULT_SCENARIO, **KIT_SCENARIO, **(values or {})}
        self.epoch_s = epoch_s
        self.origin_s: float | None = 0.0  # None: held at scenario time 0 (see hold)
        self.listeners: list[Callable[[], None]] = []  # called after every change (the hardware reschedules edges)
        self._check(self.values)
        if self.values["kit"] not in KITS:
            raise ValueError(f"unknown sensor kit {self.values['kit']!r}; known: {list(KITS)}")
        max_current = self.values["lamp_power_w"] / self.values["bus_v"]
        if max_current * self.values["shunt_ohm"] > 0.32:
            raise ValueError("the lamp's current would exceed the INA219's ±320 mV shunt range: lower shunt_ohm")

    @staticmethod
    def _check(values: dict) -> None:
        known = {**DEFAULT_SCENARIO, **KIT_SCENARIO}
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"unknown scenario keys: {sorted(unknown)}; known: {sorted(known)}")
        for key, value in values.items():
            check_scenario_value(key, value)

    def update(self, **changes) -> None:
        self._check(changes)
        self.values.update(changes)
        self._changed()

    def set_origin(self, t_s: float) -> None:
        """Scenario time 0 is virtual second t_s of the rig from now on."""
        self.origin_s = t_s
        self._changed()

    def hold(self) -> None:
        """Stay at scenario time 0 until set_origin (e.g. while the other boards of a fleet are installed)."""
        self.origin_s = None
        self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    def elapsed_s(self, t_us: int) -> float:
        """Scenario seconds at rig time t_us (0 while held)."""
        return 0.0 if self.origin_s is None else t_us / 1e6 - self.origin_s

    def rig_us(self, scenario_s: float) -> int | None:
        """Rig time (µs) of a scenario instant; None while held."""
        return None if self.origin_s is None else round((scenario_s + self.origin_s) * 1e6)

    def hour_of_day(self, t_us: int) -> float:
        """Virtual UTC hour of the day at rig time t_us."""
        return ((self.epoch_s + t_us / 1e6) % 86400) / 3600

    def lux(self, t_us: int) -> int:
        spec = self.values["lux"]
        if not isinstance(spec, dict):
            return max(0, round(spec))
        hour = self.hour_of_day(t_us)
        day, night = spec.get("day", 20000), spec.get("night", 1)
        sunrise, sunset = spec.get("sunrise_h", 7.0), spec.get("sunset_h", 17.0)
        if sunrise <= hour <= sunset:
            return round(night + (day - night) * math.sin(math.pi * (hour - sunrise) / (sunset - sunrise)))
        return round(night)

    def lamp_failed(self, t_us: int) -> bool:
        fails_at_s = self.values["lamp_fails_at_s"]
        return fails_at_s is not None and self.elapsed_s(t_us) >= fails_at_s

    def presence(self, t_us: int) -> bool:
        """Whether the PIR senses someone: within presence_hold_s of one of presence_at_s."""
        since = self.elapsed_s(t_us)
        hold = self.values["presence_hold_s"]
        return any(at <= since < at + hold for at in self.values["presence_at_s"])

    def presence_edges_s(self) -> list[float]:
        """The scenario instants at which the PIR output changes level, in order."""
        hold = self.values["presence_hold_s"]
        spans: list[list[float]] = []
        for at in sorted(self.values["presence_at_s"]):
            if spans and at <= spans[-1][1]:  # a new presence while still high prolongs the pulse
                spans[-1][1] = max(spans[-1][1], at + hold)
            else:
                spans.append([at, at + hold])
        return [edge for span in spans for edge in span]

    def temperature_c(self, t_us: int) -> float:
        spec = self.values["temperature_c"]
        if not isinstance(spec, dict):
            return round(spec, 1)
        base = spec.get("base", 15.0)
        fire_at_s = spec.get("fire_at_s")
        since = self.elapsed_s(t_us) - fire_at_s if fire_at_s is not None else -1
        if since < 0:
            return round(base, 1)
        return round(min(spec.get("max_c", 120.0), base + spec.get("rise_c_per_min", 5.0) * since / 60), 1)

    def _emptying(self, t_s: float) -> tuple[float | None, bool]:
        """(end of the last emptying finished by scenario second t_s or None, whether one is under way at t_s)."""
        last_end, under_way = None, False
        for start in sorted(self.values["emptied_at_s"]):
            end = start + self.values["emptying_s"]
            if end <= t_s:
                last_end = end
            elif start <= t_s:
                under_way = True
        return last_end, under_way

    def fill_pct(self, t_us: int) -> float:
        spec, t_s = self.values["fill_pct"], self.elapsed_s(t_us)
        if not isinstance(spec, dict):
            return float(spec)
        last_end, under_way = self._emptying(t_s)
        after = spec.get("after_pct", 0.0)
        if under_way:
            return after
        start, since = (spec.get("start", 0.0), t_s) if last_end is None else (after, t_s - last_end)
        return max(0.0, min(100.0, start + spec.get("per_day", 0.0) * since / 86400))

    def distance_cm(self, t_us: int) -> int:
        depth, offset = self.values["container_depth_m"], self.values["sensor_offset_m"]
        return round((offset + depth * (1 - self.fill_pct(t_us) / 100)) * 100)

    def tilt_deg(self, t_us: int) -> float:
        _end, under_way = self._emptying(self.elapsed_s(t_us))
        return self.values["tip_deg"] if under_way else self.values["tilt_deg"]

    def vibration(self, t_us: int, rate_hz: float) -> tuple[float, float, float] | None:
        """(quantised frequency Hz, quantised amplitude g, seconds since the event began) while the event lasts."""
        spec = self.values["vibration"]
        if not spec:
            return None
        since = self.elapsed_s(t_us) - spec["at_s"]
        if not 0 <= since < spec["duration_s"]:
            return None
        bin_hz = rate_hz / VIBRATION_WINDOW
        freq = round(spec["freq_hz"] / bin_hz) * bin_hz
        amplitude = round(spec["amplitude_g"] * ACCEL_COUNTS_PER_G) / ACCEL_COUNTS_PER_G
        return freq, amplitude, since

    def strain_ue(self, t_us: int) -> list[int]:
        """Whole µε per channel: the static strain plus the loads (strain_events) on the span at t_us."""
        strain = list(self.values["strain_ue"])
        since = self.elapsed_s(t_us)
        for event in self.values["strain_events"]:
            if event["at_s"] <= since < event["at_s"] + event["duration_s"]:
                for channel, peak in enumerate(event["peak_ue"][:len(strain)]):
                    strain[channel] += peak
        return [round(value) for value in strain]

    def crack_mm(self, t_us: int) -> float:
        spec = self.values["crack_mm"]
        if isinstance(spec, dict):
            spec = spec.get("start", 0.0) + spec.get("per_day", 0.0) * self.elapsed_s(t_us) / 86400
        return round(max(0.0, spec), 2)

    def co2_ppm(self, t_us: int) -> int:
        """Whole ppm: a constant, or the school-day curve at the virtual time of day (each day starts at
        outdoor_ppm)."""
        spec = self.values["co2_ppm"]
        if not isinstance(spec, dict):
            return round(spec)
        hour = self.hour_of_day(t_us)
        outdoor, ceiling = spec.get("outdoor_ppm", 420), spec.get("max_ppm", 5000)
        rise, fall = spec.get("rise_ppm_per_min", 30), spec.get("fall_ppm_per_min", 60)
        level, cursor_h = float(outdoor), 0.0
        for start_h, end_h in sorted((hours(start), hours(end)) for start, end in spec.get("lessons", [])):
            level = max(outdoor, level - fall * (min(start_h, hour) - cursor_h) * 60)
            if hour <= start_h:
                return round(level)
            level = min(ceiling, level + rise * (min(end_h, hour) - start_h) * 60)
            if hour <= end_h:
                return round(level)
            cursor_h = end_h
        return round(max(outdoor, level - fall * (hour - cursor_h) * 60))

    def humidity_pct(self) -> float:
        return round(self.values["humidity_pct"], 1)

    def battery_v(self, t_us: int) -> float:
        spec = self.values["battery_v"]
        if isinstance(spec, dict):
            spec = spec.get("start", 3.7) + spec.get("per_day", 0.0) * self.elapsed_s(t_us) / 86400
        return round(spec, 2)


class SensorLog:
    """Every value a board's sensors served, in order; JSON lines in `path` when given."""

    def __init__(self, board_id: str, path: str | Path | None = None):
        self.board_id = board_id
        self.entries: list[dict] = []
        self._last: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._path = Path(path) if path else None

    def record(self, t_us: int, sensor: str, value) -> None:
        last = self._last.get(sensor)
        if last is not None and last["value"] == value and 0 <= t_us - last["t_us"] <= MEASUREMENT_WINDOW_US:
            return
        entry = {"t_us": t_us, "board": self.board_id, "sensor": sensor, "value": value}
        self._last[sensor] = entry
        with self._lock:
            self.entries.append(entry)
        if self._path is not None:
            with open(self._path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [dict(e) for e in self.entries]


class Lamp:
    """The lamp: relay (on/off) and PWM dimmer (duty; full when the PWM is not driven)."""

    def __init__(self):
        self.relay = 0
        self.duty_u16: int | None = None

    def power_w(self, rated_w: float) -> float:
        duty = 1.0 if self.duty_u16 is None else self.duty_u16 / 65535
        return round(rated_w * self.relay * duty, 1)


class I2CDevice(Protocol):
    """A slave on the I2C bus."""

    def write(self, data: bytes) -> None:
        """A write transaction addressed to it."""

    def read(self, nbytes: int) -> bytes:
        """A read transaction addressed to it."""


class BH1750:
    POWER_DOWN, POWER_ON, RESET = 0x00, 0x01, 0x07
    H_RES_MODES = {0x10: 1, 0x11: 2, 0x13: 1, 0x20: 1, 0x21: 2, 0x23: 1}  # mode -> raw counts per (lux * 1.2)
    ONE_TIME = {0x20, 0x21, 0x23}

    def __init__(self, scenario: Scenario, now_us: Callable[[], int], log: SensorLog):
        self.scenario, self.now_us, self.log = scenario, now_us, log
        self.powered = False
        self.mode: int | None = None
        self.mtreg = 69

    def write(self, data: bytes) -> None:
        for command in data:
            if command == self.POWER_DOWN:
                self.powered = False
            elif command == self.POWER_ON:
                self.powered = True
            elif command == self.RESET:
                self.mode = None if not self.powered else self.mode
            elif command in self.H_RES_MODES:
                self.powered, self.mode = True, command
            elif command & 0xF8 == 0x40:
                self.mtreg = (self.mtreg & 0x1F) | ((command & 0x07) << 5)
            elif command & 0xE0 == 0x60:
                self.mtreg = (self.mtreg & 0xE0) | (command & 0x1F)

    def read(self, nbytes: int) -> bytes:
        if self.mode is None or not self.powered:
            return bytes(nbytes)
        t = self.now_us()
        lux = self.scenario.lux(t)
        raw = min(0xFFFF, round(lux * 1.2 * self.H_RES_MODES[self.mode] * self.mtreg / 69))
        self.log.record(t, "bh1750", lux)
        if self.mode in self.ONE_TIME:
            self.powered = False
        return (raw.to_bytes(2, "big") * ((nbytes + 1) // 2))[:nbytes]


class INA219:
    CONFIG, SHUNT, BUS, POWER, CURRENT, CALIBRATION = range(6)
    CONFIG_RESET = 0x399F
    PGA_RANGE_UV = {0: 40_000, 1: 80_000, 2: 160_000, 3: 320_000}

    def __init__(self, scenario: Scenario, lamp: Lamp, now_us: Callable[[], int], log: SensorLog):
        self.scenario, self.lamp, self.now_us, self.log = scenario, lamp, now_us, log
        self.pointer = 0
        self.config = self.CONFIG_RESET
        self.calibration = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.pointer = data[0] % 6
        if len(data) >= 3:
            value = (data[1] << 8) | data[2]
            if self.pointer == self.CONFIG:
                if value & 0x8000:
                    self.config, self.calibration = self.CONFIG_RESET, 0
                else:
                    self.config = value
            elif self.pointer == self.CALIBRATION:
                self.calibration = value & 0xFFFE

    def registers(self, power_w: float) -> dict[int, int]:
        """The register values the chip shows while the lamp draws power_w."""
        bus_v, shunt_ohm = self.scenario.values["bus_v"], self.scenario.values["shunt_ohm"]
        bus_raw = round(bus_v / 0.004)
        current_a = power_w / bus_v if bus_v else 0.0
        limit = self.PGA_RANGE_UV[(self.config >> 11) & 3] // 10
        shunt_raw = max(-limit, min(limit, round(current_a * shunt_ohm / 10e-6)))
        current_raw = int(shunt_raw * self.calibration / 4096)
        power_raw = int(current_raw * bus_raw / 5000)
        return {self.CONFIG: self.config, self.SHUNT: shunt_raw & 0xFFFF, self.BUS: (bus_raw << 3) | 0x2,
                self.POWER: power_raw & 0xFFFF, self.CURRENT: current_raw & 0xFFFF, self.CALIBRATION: self.calibration}

    def read(self, nbytes: int) -> bytes:
        value = self.config if self.pointer == self.CONFIG else self.calibration
        if self.pointer in (self.SHUNT, self.BUS, self.POWER, self.CURRENT):
            t = self.now_us()
            power = 0.0 if self.scenario.lamp_failed(t) else self.lamp.power_w(self.scenario.values["lamp_power_w"])
            value = self.registers(power)[self.pointer]
            self.log.record(t, "ina219", power)
        return (value.to_bytes(2, "big") * ((nbytes + 1) // 2))[:nbytes]


class Battery:
    """The battery as seen by the ADC pin through the divider."""

    def __init__(self, scenario: Scenario, now_us: Callable[[], int], log: SensorLog):
        self.scenario, self.now_us, self.log = scenario, now_us, log

    def read(self) -> tuple[int, int]:
        """(µV at the pin, 16-bit reading)."""
        t = self.now_us()
        volts = self.scenario.battery_v(t)
        microvolts = round(volts * 1_000_000 / BATTERY_DIVIDER)
        self.log.record(t, "battery", volts)
        return microvolts, min(65535, round(microvolts * 65535 / ADC_FULL_SCALE_UV))


class TMP102:
    """TI TMP102 (I2C 0x48): pointer register, temperature register 0 as 12-bit counts of 0.0625 °C, left-justified."""

    def __init__(self, scenario: Scenario, now_us: Callable[[], int], log: SensorLog):
        self.scenario, self.now_us, self.log = scenario, now_us, log
        self.pointer = 0

    def write(self, data: bytes) -> None:
        if data:
            self.pointer = data[0] & 3

    def read(self, nbytes: int) -> bytes:
        value = 0
        if self.pointer == 0:
            t = self.now_us()
            celsius = self.scenario.temperature_c(t)
            value = (round(celsius / 0.0625) & 0xFFF) << 4
            self.log.record(t, "tmp102", celsius)
        return (value.to_bytes(2, "big") * ((nbytes + 1) // 2))[:nbytes]


class MB7040:
    """MaxBotix I2CXL-MaxSonar-WR (I2C 0x70): the range command 0x51 pings, a 2-byte read gives the range in cm."""
    RANGE_COMMAND = 0x51
    OUTLIER_CM = 25

    def __init__(self, scenario: Scenario, now_us: Callable[[], int], log: SensorLog):
        self.scenario, self.now_us, self.log = scenario, now_us, log
        self.range_cm = 0
        self.pings = 0

    def write(self, data: bytes) -> None:
        if data and data[0] == self.RANGE_COMMAND:
            t = self.now_us()
            self.pings += 1
            every = self.scenario.values["echo_outlier_every"]
            if every and self.pings % every == 0:
                self.range_cm = self.OUTLIER_CM
                self.log.record(t, "mb7040_outlier", self.range_cm / 100)
            else:
                self.range_cm = self.scenario.distance_cm(t)
                self.log.record(t, "mb7040", self.range_cm / 100)

    def read(self, nbytes: int) -> bytes:
        return (self.range_cm.to_bytes(2, "big") * ((nbytes + 1) // 2))[:nbytes]


class ADXL345:
    """Analog Devices ADXL345 (I2C 0x53): register pointer with auto-increment, DEVID 0xE5, BW_RATE (output data rate
    3200 / 2^(15 - code) Hz), POWER_CTL (measure bit), DATA_FORMAT (FULL_RES, range), data x/y/z little-endian int16
    from 0x32, sampled when DATAX0 is read. Gravity for the scenario's tilt about the y axis, plus the vibration event
    on z."""
    DEVID, BW_RATE, POWER_CTL, DATA_FORMAT, DATAX0 = 0x00, 0x2C, 0x2D, 0x31, 0x32

    def __init__(self, scenario: Scenario, kit: str, now_us: Callable[[], int], log: SensorLog):
        self.scenario, self.kit, self.now_us, self.log = scenario, kit, now_us, log
        self.registers = bytearray(0x3A)
        self.registers[self.DEVID], self.registers[self.BW_RATE] = 0xE5, 0x0A
        self.pointer = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.pointer = data[0] % len(self.registers)
        for offset, value in enumerate(data[1:]):
            register = self.pointer + offset
            if register < len(self.registers) and register not in (self.DEVID,) and not 0x32 <= register <= 0x37:
                self.registers[register] = value

    @property
    def rate_hz(self) -> float:
        return 3200 / 2 ** (15 - (self.registers[self.BW_RATE] & 0x0F))

    def tilt_counts(self, tilt_deg: float) -> tuple[int, int]:
        """(x, z) counts of gravity at tilt_deg about the y axis."""
        angle = math.radians(tilt_deg)
        return round(ACCEL_COUNTS_PER_G * math.sin(angle)), round(ACCEL_COUNTS_PER_G * math.cos(angle))

    def node_tilt(self, x: int, z: int) -> float:
        """The tilt the node computes from these counts, at the schema's resolution for the kit."""
        if self.kit == "waste":
            return round(math.degrees(math.acos(z / math.sqrt(x * x + z * z))))
        return round(math.degrees(math.asin(x / ACCEL_COUNTS_PER_G)) * 100) / 100

    def sample(self) -> tuple[int, int, int]:
        t = self.now_us()
        x, z = self.tilt_counts(self.scenario.tilt_deg(t))
        self.log.record(t, "adxl345", self.node_tilt(x, z))
        event = self.scenario.vibration(t, self.rate_hz)
        dynamic = 0.0
        if event is not None:
            freq, amplitude, since = event
            dynamic = amplitude * math.sin(2 * math.pi * freq * since)
            self.log.record(t, "vibration", {"freq_hz": freq, "amplitude_g": amplitude})
        z = z + round(dynamic * ACCEL_COUNTS_PER_G)
        data_format = self.registers[self.DATA_FORMAT]
        if data_format & 0x08:
            scale, limit = 1, 4096
        else:
            scale, limit = 2 ** (data_format & 3), 512
        return tuple(max(-limit, min(limit - 1, round(v / scale))) for v in (x, 0, z))

    def read(self, nbytes: int) -> bytes:
        view = bytearray(self.registers)
        if self.pointer <= self.DATAX0 < self.pointer + nbytes and self.registers[self.POWER_CTL] & 0x08:
            for i, value in enumerate(self.sample()):
                view[self.DATAX0 + 2 * i:self.DATAX0 + 2 * i + 2] = (value & 0xFFFF).to_bytes(2, "little")
        out = bytes(view[self.pointer:self.pointer + nbytes])
        self.pointer = min(len(self.registers) - 1, self.pointer + nbytes)
        return out + bytes(nbytes - len(out))


class HX711Bank:
    """HX711 strain ADCs on one shared clock: a chip is ready (data low) 100 ms after its last read (10 SPS); the first
    rising clock edge latches every channel's count, 24 edges shift them out MSB first, the 25th ends the read."""
    CONVERSION_US = 100_000

    def __init__(self, scenario: Scenario, now_us: Callable[[], int], log: SensorLog, channels: int = 3):
        self.scenario, self.now_us, self.log, self.channels = scenario, now_us, log, channels
        self.clock_level = 0
        self.edges = 0
        self.ready_at_us = 0
        self.latched = [0] * channels

    def counts(self) -> list[int]:
        t = self.now_us()
        per_ue = self.scenario.values["strain_counts_per_ue"]
        counts = []
        for channel, strain in enumerate(self.scenario.strain_ue(t)[:self.channels], start=1):
            self.log.record(t, f"hx711_{channel}", strain)
            counts.append(max(-0x800000, min(0x7FFFFF, round(strain * per_ue))) & 0xFFFFFF)
        return counts + [0] * (self.channels - len(counts))

    def clock(self, level: int) -> None:
        rising = level and not self.clock_level
        self.clock_level = level
        if not rising:
            return
        if self.edges == 0:
            self.latched = self.counts()
        self.edges += 1
        if self.edges == 25:
            self.edges = 0
            self.ready_at_us = self.now_us() + self.CONVERSION_US

    def data(self, channel: int) -> int:
        """The data line of channel (0-based)."""
        if 1 <= self.edges <= 24:
            return (self.latched[channel] >> (24 - self.edges)) & 1
        return 0 if self.now_us() >= self.ready_at_us else 1


class CrackGauge:
    """A potentiometric crack gauge on an ADC pin: crack_mm / crack_mm_per_v volts, in whole µV."""

    def __init__(self, scenario: Scenario, now_us: Callable[[], int], log: SensorLog):
        self.scenario, self.now_us, self.log = scenario, now_us, log

    def read(self) -> tuple[int, int]:
        t = self.now_us()
        crack_mm = self.scenario.crack_mm(t)
        microvolts = round(crack_mm / self.scenario.values["crack_mm_per_v"] * 1_000_000)
        self.log.record(t, "crack_gauge", crack_mm)
        return microvolts, min(65535, round(microvolts * 65535 / ADC_FULL_SCALE_UV))


class I2CNack(Exception):
    """The device did not acknowledge a transfer (the MCU's I2C call raises OSError)."""


def sensirion_crc8(data: bytes) -> int:
    """Sensirion's CRC-8 over one 16-bit word: polynomial 0x31, initial value 0xFF, no reflection, no final XOR."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def sensirion_words(*words: int) -> bytes:
    """16-bit words big-endian, each followed by its CRC-8, as Sensirion sensors answer."""
    out = bytearray()
    for word in words:
        pair = word.to_bytes(2, "big")
        out += pair + bytes([sensirion_crc8(pair)])
    return bytes(out)


class SCD41:
    """Sensirion SCD41 CO2 sensor (I2C 0x62): 16-bit commands, answers as CRC-protected words read after them.

    Periodic measurement (0x21B1: a measurement every 5 s; low power 0x21AC: every 30 s) until stopped (0x3F86);
    measure_single_shot (0x219D) gives one after 5 s. get_data_ready_status (0xE4B8) shows a measurement not read yet in
    its 11 low bits; read_measurement (0xEC05) gives CO2 (ppm), temperature (-45 + 175 * word / 65535 °C) and humidity
    (100 * word / 65535 %) and clears it, and is not acknowledged when there is nothing new. While measuring
    periodically the chip acknowledges only those commands (and stop). get_serial_number (0x3682): three words.
    The values are the scenario's at the instant the measurement completed."""
    START_PERIODIC, START_LOW_POWER, STOP_PERIODIC = 0x21B1, 0x21AC, 0x3F86
    READ_MEASUREMENT, DATA_READY, SINGLE_SHOT, SERIAL_NUMBER = 0xEC05, 0xE4B8, 0x219D, 0x3682
    PERIODIC_US = {START_PERIODIC: 5_000_000, START_LOW_POWER: 30_000_000}
    SINGLE_SHOT_US = 5_000_000
    SERIAL = (0x0A1B, 0x2C3D, 0x4E5F)

    def __init__(self, scenario: Scenario, now_us: Callable[[], int], log: SensorLog):
        self.scenario, self.now_us, self.log = scenario, now_us, log
        self.period_us: int | None = None  # while measuring periodically
        self.started_us = 0
        self.single_shot_done_us: int | None = None
        self.read_up_to_us = -1  # completion instant of the last measurement read out
        self.answer: bytes | None = None

    def _latest_measurement_us(self) -> int | None:
        """Completion instant of the newest measurement by now, or None."""
        now = self.now_us()
        if self.period_us is not None:
            done = (now - self.started_us) // self.period_us
            return self.started_us + done * self.period_us if done >= 1 else None
        if self.single_shot_done_us is not None and now >= self.single_shot_done_us:
            return self.single_shot_done_us
        return None

    def _new_measurement_us(self) -> int | None:
        latest = self._latest_measurement_us()
        return latest if latest is not None and latest > self.read_up_to_us else None

    def write(self, data: bytes) -> None:
        if len(data) < 2:
            raise I2CNack("SCD41 commands are 16 bits")
        command = int.from_bytes(data[:2], "big")
        periodic_only = (self.READ_MEASUREMENT, self.DATA_READY, self.STOP_PERIODIC)
        if self.period_us is not None and command not in periodic_only:
            raise I2CNack(f"SCD41 command {command:#06x} during periodic measurement")
        self.answer = None
        if command in self.PERIODIC_US:
            self.period_us, self.started_us = self.PERIODIC_US[command], self.now_us()
        elif command == self.STOP_PERIODIC:
            self.period_us = None
        elif command == self.SINGLE_SHOT:
            self.single_shot_done_us = self.now_us() + self.SINGLE_SHOT_US
        elif command == self.DATA_READY:
            self.answer = sensirion_words(0x8006 if self._new_measurement_us() is not None else 0x8000)
        elif command == self.SERIAL_NUMBER:
            self.answer = sensirion_words(*self.SERIAL)
        elif command == self.READ_MEASUREMENT:
            self.answer = self._measurement()
        else:
            raise I2CNack(f"SCD41 command {command:#06x} is not modelled")

    def _measurement(self) -> bytes | None:
        at_us = self._new_measurement_us()
        if at_us is None:
            return None
        self.read_up_to_us = at_us
        co2 = max(0, min(0xFFFF, self.scenario.co2_ppm(at_us)))
        celsius, humidity = self.scenario.temperature_c(at_us), self.scenario.humidity_pct()
        t = self.now_us()
        for sensor, value in (("scd41_co2", co2), ("scd41_temperature", celsius), ("scd41_humidity", humidity)):
            self.log.record(t, sensor, value)
        temperature_word = max(0, min(0xFFFF, round((celsius + 45) * 65535 / 175)))
        return sensirion_words(co2, temperature_word, max(0, min(0xFFFF, round(humidity * 65535 / 100))))

    def read(self, nbytes: int) -> bytes:
        answer, self.answer = self.answer, None
        if answer is None:
            raise I2CNack("SCD41 has nothing to send")
        return (answer + bytes(max(0, nbytes - len(answer))))[:nbytes]
