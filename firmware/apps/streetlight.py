"""Streetlight node: switches the lamp at dusk and dawn from the ambient light (BH1750) with hysteresis, dims it to
`dim_level`, meters its power (INA219) and energy (Wh, persisted), reads the backup battery, and reports a reading over
LoRaWAN every `interval_s` through the payload schema (as confirmed uplinks when `confirmed` is set). A lamp whose power
draw is implausible for its commanded state (on: under FAULT_FRACTION of lamp_rated_w times the dim level; off: over
OFF_LIMIT_W) is a fault: the "alarm" message goes at once as a confirmed uplink, before the reading, and with every
reading until the network acknowledged it, once per fault episode (again only after the lamp was seen healthy). One
short log line per reading, alarm and event worth knowing (join, applied setting, ignored downlink), never keys.

Settings (config "settings", interval_s at the top level; all but hysteresis_lux also by the FPort 3 "config" downlink,
applied at once and kept across reboots): interval_s (60), confirmed (false), dusk_lux (50): on below it,
hysteresis_lux (20): off above dusk_lux + hysteresis_lux, dim_level (100, percent). Calibration (config "calibration"):
ina219_shunt_ohm (0.1), lamp_rated_w (36.0, the lamp's power at full level), battery_divider (the board's),
battery_empty_v (3.3) and battery_full_v (4.2), the battery voltages reported as level 1 and 254 to DevStatusReq.
"""
from apps.runtime import apply_config, config_fport, handle, print_settings, radio_summary, run_slots
from cbor import encode_reading
from config import number, section
from drivers.bh1750 import BH1750
from drivers.ina219 import INA219
from lorawan.commands import battery_level
from lorawan.events import Done
from settings import Settings

KIND = "streetlight"
CONFIG_FPORT = config_fport(KIND)
# (name, default, low, high): the ranges of the schema's config message; low None for a bool
SETTINGS = (("interval_s", 60, 10, 86400), ("confirmed", False, None, None), ("dusk_lux", 50, 0, 1000),
            ("dim_level", 100, 0, 100))
ENERGY_SAVE_EVERY = 10  # readings between energy writes to flash
_MS_PER_HOUR = 3600000
FAULT_FRACTION = 0.3  # a lit lamp drawing less than this share of its expected power is faulty
OFF_LIMIT_W = 5.0  # a switched-off lamp drawing more than this is faulty (stuck relay)


class Streetlight:
    """The lamp controller and meter; reading(now_ms) does one control step and returns the values to report."""

    def __init__(self, board, config, store):
        self.settings = Settings(config, store, SETTINGS)
        settings, calibration = section(config, "settings"), section(config, "calibration")
        self.hysteresis_lux = number(settings, "hysteresis_lux", 20, 0, 65535)
        shunt_ohm = number(calibration, "ina219_shunt_ohm", 0.1, 0.0001, 10, "calibration")
        self.lamp_rated_w = number(calibration, "lamp_rated_w", 36.0, 0.1, 400, "calibration")
        self.battery_divider = number(calibration, "battery_divider", board.BATTERY_DIVIDER, 1, 100, "calibration")
        self.battery_empty_v = number(calibration, "battery_empty_v", 3.3, 0, 60, "calibration")
        self.battery_full_v = number(calibration, "battery_full_v", 4.2, self.battery_empty_v + 0.01, 60, "calibration")
        self.board, self.store = board, store
        self.light = BH1750(board.i2c())
        self.meter = INA219(board.i2c(), shunt_ohm=shunt_ohm)
        self.lamp = board.lamp()
        self.energy_wh = store.get("energy_wh", 0.0)
        self.readings = 0
        self._power_w = 0.0
        self._last_ms = None
        self.fault_reported = False

    def reading(self, now_ms):
        dusk_lux = self.settings.values["dusk_lux"]
        lux = self.light.lux()
        if self.lamp.on and lux > dusk_lux + self.hysteresis_lux:
            self.lamp.set(False, 0)
        elif not self.lamp.on and lux < dusk_lux:
            self.lamp.set(True, self.settings.values["dim_level"])
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

    def lamp_fault(self, values):
        """The "alarm" message's values while `values` (a reading) show a lamp fault whose alarm the network has not
        acknowledged yet, else None."""
        expected_w = self.lamp_rated_w * values["dim_level"] / 100 if values["lamp_on"] else 0.0
        power_w = values["power"]
        if values["lamp_on"]:
            faulty = power_w < FAULT_FRACTION * expected_w
        else:
            faulty = power_w > OFF_LIMIT_W
        if not faulty:
            self.fault_reported = False
        if not faulty or self.fault_reported:
            return None
        return {"lamp_fault": True, "power": min(400.0, power_w), "expected_power": min(400.0, expected_w),
                "dim_level": values["dim_level"]}

    def configure(self, payload, fcnt):
        """Apply a "config" downlink payload at once (a lit lamp takes a new dim level now); returns its log lines."""
        lines = apply_config(KIND, self.settings, payload, fcnt)
        if self.lamp.on and self.lamp.level_pct != self.settings.values["dim_level"]:
            self.lamp.set(True, self.settings.values["dim_level"])
        return lines

    def handle(self, events):
        """(lines about the join, lines about downlinks) for the events of one send(); config downlinks are applied."""
        return handle(events, CONFIG_FPORT, self.configure)


def _log_line(values, events):
    return "reading lamp=%s dim=%d%% power=%.1fW energy=%dWh light=%dlx battery=%.2fV -> %s" % (
        "on" if values["lamp_on"] else "off", values["dim_level"], values["power"], round(values["energy"]),
        round(values["ambient_light"]), values["battery"], radio_summary(events))


def _alarm_line(alarm, events):
    return "alarm: lamp fault: power=%.1fW expected=%.1fW dim=%d%% -> %s" % (
        alarm["power"], alarm["expected_power"], alarm["dim_level"], radio_summary(events))


def _send(app, node, message, values, confirmed, log_line):
    """Encode and send one message, apply what came back and print its lines."""
    fport, payload = encode_reading(KIND, message, values)
    events = node.send(fport, payload, confirmed)
    joins, downlinks = app.handle(events)
    for line in joins + [log_line(values, events)] + downlinks:
        print(line)
    return events


def run(board, config, node, store):
    """The app's loop, forever: one control step and reading per interval_s slot (apps.runtime.run_slots)."""
    app = Streetlight(board, config, store)
    settings = app.settings.values
    print_settings(app.settings, SETTINGS)

    def step():
        values = app.reading(node.now_ms())
        node.mac.battery_level = battery_level(values["battery"], app.battery_empty_v, app.battery_full_v)
        alarm = app.lamp_fault(values)
        if alarm is not None:  # until acknowledged: an alarm lost on the air goes again with the next reading
            events = _send(app, node, "alarm", alarm, True, _alarm_line)
            app.fault_reported = any(isinstance(e, Done) and e.acked for e in events)
        _send(app, node, "reading", values, settings["confirmed"], _log_line)

    run_slots(node, settings, step)
