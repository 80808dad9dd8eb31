"""Streetlight node: switches the lamp at dusk and dawn from the ambient light (BH1750) with hysteresis, dims it to
`dim_level`, meters its power (INA219) and energy (Wh, persisted), reads the backup battery, and reports a reading over
LoRaWAN every `interval_s` through the payload schema. One short log line per reading (never keys).

Settings (config "settings"): dusk_lux (50): on below it; hysteresis_lux (20): off above dusk_lux + hysteresis_lux;
dim_level (100, percent). Calibration (config "calibration"): ina219_shunt_ohm (0.1), battery_divider (the board's).
"""
import os

import machine

from cbor import encode_reading
from config import number, section
from drivers.bh1750 import BH1750
from drivers.ina219 import INA219
from lorawan.mac import Sent

KIND = "streetlight"
ENERGY_SAVE_EVERY = 10  # readings between energy writes to flash
RESET_AFTER_FAILURES = 5  # consecutive failed readings before the board resets itself
BOOT_SPREAD_MS = 30000  # the first reading comes within this long after boot
_MS_PER_HOUR = 3600000


class Streetlight:
    """The lamp controller and meter; reading(now_ms) does one control step and returns the values to report."""

    def __init__(self, board, config, store):
        settings, calibration = section(config, "settings"), section(config, "calibration")
        self.dusk_lux = number(settings, "dusk_lux", 50, 0, 65535)
        self.dawn_lux = self.dusk_lux + number(settings, "hysteresis_lux", 20, 0, 65535)
        self.dim_level = int(number(settings, "dim_level", 100, 0, 100))
        shunt_ohm = number(calibration, "ina219_shunt_ohm", 0.1, 0.0001, 10, "calibration")
        self.battery_divider = number(calibration, "battery_divider", board.BATTERY_DIVIDER, 1, 100, "calibration")
        self.board, self.store = board, store
        self.light = BH1750(board.i2c())
        self.meter = INA219(board.i2c(), shunt_ohm=shunt_ohm)
        self.lamp = board.lamp()
        self.energy_wh = store.get("energy_wh", 0.0)
        self.readings = 0
        self._power_w = 0.0
        self._last_ms = None

    def reading(self, now_ms):
        lux = self.light.lux()
        if self.lamp.on and lux > self.dawn_lux:
            self.lamp.set(False, 0)
        elif not self.lamp.on and lux < self.dusk_lux:
            self.lamp.set(True, self.dim_level)
        if self._last_ms is not None:  # the lamp drew the last measured power since the last reading
            self.energy_wh += self._power_w * (now_ms - self._last_ms) / _MS_PER_HOUR
        self._last_ms = now_ms
        self._power_w = max(0.0, self.meter.power_watts())
        self.readings += 1
        if self.readings % ENERGY_SAVE_EVERY == 0:
            self.store.put("energy_wh", self.energy_wh)
            self.store.flush()
        return {"lamp_on": self.lamp.on, "dim_level": self.lamp.level_pct, "power": self._power_w,
                "energy": self.energy_wh, "ambient_light": min(65535, lux),
                "battery": self.board.battery_volts(self.battery_divider)}


def _log_line(values, events):
    sent = [e for e in events if isinstance(e, Sent)]
    radio = "fcnt %d %.1f MHz DR%d" % (sent[0].fcnt, sent[0].freq_khz / 1000, sent[0].dr) if sent else "not sent"
    return "reading lamp=%s dim=%d%% power=%.1fW energy=%dWh light=%dlx battery=%.2fV -> %s" % (
        "on" if values["lamp_on"] else "off", values["dim_level"], values["power"], round(values["energy"]),
        round(values["ambient_light"]), values["battery"], radio)


def _random_below(n):
    return int.from_bytes(os.urandom(4), "big") % n if n > 0 else 0


def run(board, config, node, store):
    """The app's loop, forever: one reading per interval_s slot, at a random instant in the first half of the slot (the
    first within BOOT_SPREAD_MS of boot) so that nodes powered up together do not keep colliding on the air. A failed
    reading is logged and the loop goes on; RESET_AFTER_FAILURES in a row reset the board."""
    interval_ms = int(number(config, "interval_s", 60, 1, 86400, "config") * 1000)
    app = Streetlight(board, config, store)
    failures = 0
    slot_ms = node.now_ms()
    spread_ms = min(interval_ms // 2, BOOT_SPREAD_MS)
    while True:
        node.sleep_until(slot_ms + _random_below(spread_ms))
        try:
            values = app.reading(node.now_ms())
            fport, payload = encode_reading(KIND, "reading", values)
            print(_log_line(values, node.send(fport, payload)))
            failures = 0
        except Exception as exc:  # a sensor, radio or encoding failure must not end the loop
            failures += 1
            print("reading failed (%d in a row): %s: %s" % (failures, type(exc).__name__, exc))
            if failures >= RESET_AFTER_FAILURES:
                print("resetting after %d failed readings" % failures)
                machine.reset()
        spread_ms = interval_ms // 2
        slot_ms += interval_ms
        now = node.now_ms()
        while slot_ms + spread_ms <= now:  # the exchange outlasted whole slots (duty cycle): skip them
            slot_ms += interval_ms
