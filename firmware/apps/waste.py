"""Waste container node: fill level from an ultrasonic range finder on the lid (MB7040, median of several pings) and the
container geometry, temperature (TMP102), tilt (ADXL345) with emptying detection, battery (with a low flag); one reading
over LoRaWAN every `interval_s`, every half of it once the container is fuller than `fast_fill_pct`. The tilt and
the temperature are checked every `tilt_poll_s` between readings: tipped beyond `tip_deg` and back below
`upright_deg` is one emptying, logged, and followed at once by a reading (the fill restarts from the empty
container).

Fire: a temperature over `fire_temp_c`, or a rise faster than `fire_rise_c_per_min` between two samples at least
RATE_WINDOW_MS apart, starts a fire episode (it ends once the temperature is FIRE_HYSTERESIS_C under the limit and the
rise slowed to under half its limit). The "alarm" message goes at once, as a confirmed uplink followed by a reading, and
with every reading until the network acknowledged it, once per episode (apps.runtime.alarm_due). A reading is taken
by apps/waste_reading.py, loaded for it.

Settings (config "settings", interval_s at the top level; interval_s, confirmed, battery_low_v, fire_temp_c and
fire_rise_c_per_min also by the FPort 3 "config" downlink): interval_s (900), confirmed (false), battery_low_v (3.4),
fire_temp_c (70), fire_rise_c_per_min (8.0: a rate-of-rise heat detector's 15 °F/min), fast_fill_pct (80),
tilt_poll_s (30), tip_deg (60), upright_deg (20). Calibration (config "calibration"): container_depth_m (1.2: from the
full mark down to the bottom), sensor_offset_m (0.1: from the sensor down to the full mark), pings (5),
battery_divider (the board's), battery_empty_v (3.3), battery_full_v (4.2).
"""
import math

from micropython import const

from apps.runtime import alarm_due, first_delay_ms, guarded, over_limit, send_alarm, send_message
from modules import unload

KIND = "waste"
_FIRE_HYSTERESIS_C = const(5)
_RATE_WINDOW_MS = const(20000)  # a rise rate over a shorter time would mostly be the sensor's 0.0625 °C steps


def tilt_from_upright(accelerometer):
    """Degrees between the ADXL345's z axis and the vertical (0 upright, 180 upside down)."""
    x, y, z = accelerometer.counts()
    magnitude = math.sqrt(x * x + y * y + z * z)
    if magnitude == 0:
        raise OSError("ADXL345: no acceleration measured")
    return math.degrees(math.acos(max(-1.0, min(1.0, z / magnitude))))


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
    """The container's sensors, emptying watch and fire check (set up by apps/waste_setup.py: the sensors,
    calibration, the fire check's state, the alarm masks); a reading is taken by apps/waste_reading.py (loaded for
    it)."""

    def __init__(self, board, config, store):
        from apps.waste_setup import set_up  # at boot only: unloaded after

        set_up(self, board, config, store)
        unload("apps.waste_setup")
        del set_up  # the last reference to its module's code: freed before the settings are read
        from settings import start  # at boot only: unloaded once the settings are read

        self.settings = start(config, store, KIND)

    def emptied(self):
        """Check the tilt once; True when that completes an emptying."""
        return self.tilt.update(tilt_from_upright(self.accelerometer))

    def fire_due(self, now_ms, celsius=None):
        """Sample the temperature (measured now unless given); True while a fire alarm is due: a fire is a
        temperature over fire_temp_c or a rise faster than fire_rise_c_per_min, measured over RATE_WINDOW_MS at least
        (apps.runtime.over_limit, each with its hysteresis)."""
        values = self.settings
        if celsius is None:
            celsius = self.thermometer.celsius()
        base = self.rise_base
        if base is None:
            self.rise_base = (now_ms, celsius)
        elif now_ms - base[0] >= _RATE_WINDOW_MS:
            self.rise_rate = (celsius - base[1]) * 60000 / (now_ms - base[0])
            self.rise_base = (now_ms, celsius)
        rate_limit = values["fire_rise_c_per_min"]
        self.hot = over_limit(self.hot, celsius, values["fire_temp_c"], _FIRE_HYSTERESIS_C)
        self.rising = over_limit(self.rising, self.rise_rate, rate_limit, rate_limit / 2)
        return alarm_due(self, self.hot or self.rising)

    def interval_ms(self):
        """The reporting interval: halved while the container is fuller than fast_fill_pct."""
        interval_ms = int(self.settings["interval_s"] * 1000)
        return interval_ms // 2 if self.last_fill > self.fast_fill_pct else interval_ms


App = Waste  # startup.py sets the app up at boot: App(board, config, store) takes what it needs from config


def run(app, node):
    """The app's loop, forever: sleep until the next reading, checking the tilt and the temperature every
    tilt_poll_s; an emptying or a fire brings the reading forward (a due fire alarm goes first). A failed reading is
    logged and the loop goes on (apps.runtime.guarded)."""
    settings = app.settings

    def step():
        """One reading (apps/waste_reading.py, loaded for it), a due fire alarm sent first."""
        from apps.waste_reading import reading

        try:
            alarm, message, line = reading(app, node)
        finally:
            unload("apps.waste_reading")
        del reading  # the last reference to its module's code: freed before the messages are sent
        if alarm is not None:
            send_alarm(node, app, KIND, alarm[0], 1, alarm[1])
        send_message(node, app, KIND, message, settings["confirmed"], line)

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
                burning = app.alarms_active
                if app.fire_due(now) and not burning:  # a new fire episode: its alarm goes at once
                    break
            except OSError as exc:
                print("tilt or temperature check failed: %s: %s" % (type(exc).__name__, exc))
        failures = guarded(step, failures)
        next_ms = node.now_ms() + app.interval_ms()
