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
                "crack_mm_per_v": 10.0, "vibration": None}
KITS = ("streetlight", "waste", "bridge")
TMP102_ADDRESS, ADXL345_ADDRESS, MB7040_ADDRESS = 0x48, 0x53, 0x70
PIN_CRACK_GAUGE = 36
ACCEL_COUNTS_PER_G = 256
VIBRATION_WINDOW = 64  # samples of the node's vibration window: event frequencies are quantised to its bins


class Scenario:
    """What the board's environment and hardware are like over virtual time."""

    def __init__(self, values: dict | None = None, epoch_s: int = 0):
        self.values = {**DEFAULT_SCENARIO, **KIT_SCENARIO, **(values or {})}
        self.epoch_s = epoch_s
        known = {**DEFAULT_SCENARIO, **KIT_SCENARIO}
        unknown = set(self.values) - set(known)
        if unknown:
            raise ValueError(f"unknown scenario keys: {sorted(unknown)}; known: {sorted(known)}")
        if self.values["kit"] not in KITS:
            raise ValueError(f"unknown sensor kit {self.values['kit']!r}; known: {list(KITS)}")
        max_current = self.values["lamp_power_w"] / self.values["bus_v"]
        if max_current * self.values["shunt_ohm"] > 0.32:
            raise ValueError("the lamp's current would exceed the INA219's ±320 mV shunt range: lower shunt_ohm")

    def update(self, **changes) -> None:
        self.values.update(changes)

    def lux(self, t_us: int) -> int:
        spec = self.values["lux"]
        if not isinstance(spec, dict):
            return max(0, round(spec))
        hour = ((self.epoch_s + t_us / 1e6) % 86400) / 3600
        day, night = spec.get("day", 20000), spec.get("night", 1)
        sunrise, sunset = spec.get("sunrise_h", 7.0), spec.get("sunset_h", 17.0)
        if sunrise <= hour <= sunset:
            return round(night + (day - night) * math.sin(math.pi * (hour - sunrise) / (sunset - sunrise)))
        return round(night)

    def lamp_failed(self, t_us: int) -> bool:
        fails_at_s = self.values["lamp_fails_at_s"]
        return fails_at_s is not None and t_us >= fails_at_s * 1e6

    def temperature_c(self) -> float:
        return round(self.values["temperature_c"], 1)

    def _emptying(self, t_s: float) -> tuple[float | None, bool]:
        """(end of the last emptying finished by t_s or None, whether one is under way at t_s)."""
        last_end, under_way = None, False
        for start in sorted(self.values["emptied_at_s"]):
            end = start + self.values["emptying_s"]
            if end <= t_s:
                last_end = end
            elif start <= t_s:
                under_way = True
        return last_end, under_way

    def fill_pct(self, t_us: int) -> float:
        spec, t_s = self.values["fill_pct"], t_us / 1e6
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
        _end, under_way = self._emptying(t_us / 1e6)
        return self.values["tip_deg"] if under_way else self.values["tilt_deg"]

    def vibration(self, t_us: int, rate_hz: float) -> tuple[float, float, float] | None:
        """(quantised frequency Hz, quantised amplitude g, seconds since the event began) while the event lasts."""
        spec = self.values["vibration"]
        if not spec:
            return None
        since = t_us / 1e6 - spec["at_s"]
        if not 0 <= since < spec["duration_s"]:
            return None
        bin_hz = rate_hz / VIBRATION_WINDOW
        freq = round(spec["freq_hz"] / bin_hz) * bin_hz
        amplitude = round(spec["amplitude_g"] * ACCEL_COUNTS_PER_G) / ACCEL_COUNTS_PER_G
        return freq, amplitude, since

    def battery_v(self, t_us: int) -> float:
        spec = self.values["battery_v"]
        if isinstance(spec, dict):
            spec = spec.get("start", 3.7) + spec.get("per_day", 0.0) * t_us / 86400e6
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
            celsius = self.scenario.temperature_c()
            value = (round(celsius / 0.0625) & 0xFFF) << 4
            self.log.record(self.now_us(), "tmp102", celsius)
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
        for channel, strain in enumerate(self.scenario.values["strain_ue"][:self.channels], start=1):
            strain = round(strain)
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
        crack_mm = round(self.scenario.values["crack_mm"], 2)
        microvolts = round(crack_mm / self.scenario.values["crack_mm_per_v"] * 1_000_000)
        self.log.record(t, "crack_gauge", crack_mm)
        return microvolts, min(65535, round(microvolts * 65535 / ADC_FULL_SCALE_UV))
