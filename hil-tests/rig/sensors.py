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
virtual UTC day), lamp_power_w (36.0), bus_v (24.0), shunt_ohm (0.1), battery_v (3.70, or {"start", "per_day"}).
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

DEFAULT_SCENARIO = {"lux": 250, "lamp_power_w": 36.0, "bus_v": 24.0, "shunt_ohm": 0.1, "battery_v": 3.70}


class Scenario:
    """What the board's environment and hardware are like over virtual time."""

    def __init__(self, values: dict | None = None, epoch_s: int = 0):
        self.values = {**DEFAULT_SCENARIO, **(values or {})}
        self.epoch_s = epoch_s
        unknown = set(self.values) - set(DEFAULT_SCENARIO)
        if unknown:
            raise ValueError(f"unknown scenario keys: {sorted(unknown)}; known: {sorted(DEFAULT_SCENARIO)}")
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
            power = self.lamp.power_w(self.scenario.values["lamp_power_w"])
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
