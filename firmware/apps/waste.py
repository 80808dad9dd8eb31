"""Waste container node: fill level from an ultrasonic range finder on the lid (MB7040, median of several pings) and the
container geometry, temperature (TMP102), tilt (ADXL345) with emptying detection, battery; one reading over LoRaWAN
every `interval_s`, every half of it once the container is fuller than `fast_fill_pct`. The tilt is checked every
`tilt_poll_s` between readings: tipped beyond `tip_deg` and back below `upright_deg` is one emptying, logged, and
followed at once by a reading (the fill restarts from the empty container).

Settings (config "settings", interval_s at the top level; interval_s and confirmed also by the FPort 3 "config"
downlink): interval_s (900), confirmed (false), fast_fill_pct (80), tilt_poll_s (30), tip_deg (60), upright_deg (20).
Calibration (config "calibration"): container_depth_m (1.2: from the full mark down to the bottom), sensor_offset_m
(0.1: from the sensor down to the full mark), pings (5), battery_divider (the board's), battery_empty_v (3.3),
battery_full_v (4.2).
"""
from apps.runtime import apply_config, config_fport, first_delay_ms, guarded, handle, print_settings, radio_summary
from cbor import encode_reading
from config import number, section
from drivers.adxl345 import ADXL345
from drivers.mb7040 import MB7040
from drivers.tmp102 import TMP102
from lorawan.commands import battery_level
from settings import Settings

KIND = "waste"
CONFIG_FPORT = config_fport(KIND)
# (name, default, low, high): the ranges of the schema's config message; low None for a bool
SETTINGS = (("interval_s", 900, 10, 86400), ("confirmed", False, None, None))


def fill_percent(distance_m, depth_m, offset_m):
    """Fill level 0..100 % of a container `depth_m` deep whose sensor sits `offset_m` above the full mark."""
    fill = (depth_m + offset_m - distance_m) / depth_m * 100
    return max(0, min(100, round(fill)))


class TiltWatch:
    """Emptying detection: tipped beyond tip_deg, then back below upright_deg, is one emptying."""

    def __init__(self, tip_deg, upright_deg):
        self.tip_deg, self.upright_deg = tip_deg, upright_deg
        self.tipped = False
        self.max_deg = 0.0
        self.emptyings = 0

    def update(self, tilt_deg):
        """Feed one tilt; True when it completes an emptying."""
        if not self.tipped:
            if tilt_deg > self.tip_deg:
                self.tipped, self.max_deg = True, tilt_deg
            return False
        self.max_deg = max(self.max_deg, tilt_deg)
        if tilt_deg < self.upright_deg:
            self.tipped = False
            self.emptyings += 1
            return True
        return False


class Waste:
    """The container's sensors; reading() returns the values to report."""

    def __init__(self, board, config, store):
        self.settings = Settings(config, store, SETTINGS)
        settings, calibration = section(config, "settings"), section(config, "calibration")
        self.fast_fill_pct = number(settings, "fast_fill_pct", 80, 0, 100)
        self.tilt_poll_s = number(settings, "tilt_poll_s", 30, 1, 3600)
        tip_deg = number(settings, "tip_deg", 60, 10, 180)
        self.tilt = TiltWatch(tip_deg, number(settings, "upright_deg", 20, 0, tip_deg))
        self.depth_m = number(calibration, "container_depth_m", 1.2, 0.1, 10, "calibration")
        self.offset_m = number(calibration, "sensor_offset_m", 0.1, 0, 5, "calibration")
        self.pings = int(number(calibration, "pings", 5, 1, 15, "calibration"))
        self.battery_divider = number(calibration, "battery_divider", board.BATTERY_DIVIDER, 1, 100, "calibration")
        self.battery_empty_v = number(calibration, "battery_empty_v", 3.3, 0, 60, "calibration")
        self.battery_full_v = number(calibration, "battery_full_v", 4.2, self.battery_empty_v + 0.01, 60, "calibration")
        self.board = board
        self.ranger = MB7040(board.i2c())
        self.thermometer = TMP102(board.i2c())
        self.accelerometer = ADXL345(board.i2c())
        self.last_fill = 0

    def emptied(self):
        """Check the tilt once; True when that completes an emptying."""
        return self.tilt.update(self.accelerometer.tilt_from_upright())

    def reading(self):
        distance = self.ranger.distance_m(self.pings)
        tilt = self.accelerometer.tilt_from_upright()
        self.last_fill = fill_percent(distance, self.depth_m, self.offset_m)
        return {"fill_level": self.last_fill, "distance": distance, "temperature": self.thermometer.celsius(),
                "tilt": round(tilt), "battery": self.board.battery_volts(self.battery_divider)}

    def interval_ms(self):
        """The reporting interval: halved while the container is fuller than fast_fill_pct."""
        interval_ms = int(self.settings.values["interval_s"] * 1000)
        return interval_ms // 2 if self.last_fill > self.fast_fill_pct else interval_ms

    def handle(self, events):
        """(lines about the join, lines about downlinks) for the events of one send(); config downlinks are applied."""
        return handle(events, CONFIG_FPORT, lambda payload, fcnt: apply_config(KIND, self.settings, payload, fcnt))


def run(board, config, node, store):
    """The app's loop, forever: sleep until the next reading, checking the tilt every tilt_poll_s; an emptying brings
    the reading forward. A failed reading is logged and the loop goes on (apps.runtime.guarded)."""
    app = Waste(board, config, store)
    settings = app.settings.values
    print_settings(app.settings, SETTINGS)

    def step():
        values = app.reading()
        node.mac.battery_level = battery_level(values["battery"], app.battery_empty_v, app.battery_full_v)
        fport, payload = encode_reading(KIND, "reading", values)
        events = node.send(fport, payload, settings["confirmed"])
        joins, downlinks = app.handle(events)
        line = "reading fill=%d%% distance=%.3fm temperature=%.1fC tilt=%ddeg battery=%.2fV -> %s" % (
            values["fill_level"], values["distance"], values["temperature"], values["tilt"], values["battery"],
            radio_summary(events))
        for text in joins + [line] + downlinks:
            print(text)

    failures = 0
    next_ms = node.now_ms() + first_delay_ms(settings["interval_s"])
    poll_ms = int(app.tilt_poll_s * 1000)
    while True:
        now = node.now_ms()
        while now < next_ms:
            node.sleep_until(min(next_ms, now + poll_ms))
            now = node.now_ms()
            try:
                if app.emptied():
                    print("emptied: tipped to %d deg and back (emptying %d); fill restarts"
                          % (round(app.tilt.max_deg), app.tilt.emptyings))
                    break
            except OSError as exc:
                print("tilt check failed: %s: %s" % (type(exc).__name__, exc))
        failures = guarded(step, failures)
        next_ms = node.now_ms() + app.interval_ms()
