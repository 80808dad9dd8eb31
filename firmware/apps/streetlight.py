"""Streetlight node: switches the lamp at dusk and dawn from the ambient light (BH1750) with hysteresis, dims it to
`dim_level`, meters its power (INA219) and energy (Wh, persisted), reads the backup battery, and reports a reading over
LoRaWAN every `interval_s` through the payload schema (as confirmed uplinks when `confirmed` is set).

While lit, two things change the level between readings: a night-dimming schedule relative to the dusk switch-on (what
controllers call a "virtual midnight": no wall clock needed), `night_dim_level` from `night_dim_after_min` after
switch-on for `night_dim_for_min` (0: none), and a presence sensor (PIR, if the board has one, polled every
PIR_POLL_MS while lit) that raises the lamp to at least `presence_level` until `presence_hold_s` after the last presence
sensed (public safety). The reading counts the presence events (PIR going high) since the last reading.

A lamp whose power draw is implausible for its commanded state (on: under FAULT_FRACTION of lamp_rated_w times the
level; off: over OFF_LIMIT_W) is a fault: the "alarm" message goes at once as a confirmed uplink, before the reading,
and with every reading until the network acknowledged it, once per fault episode (apps.runtime.alarm_due). The reading
carries battery_low (set below `battery_low_v`, with hysteresis); energy, ambient light and battery voltage take turns
when all fields would not fit in 24 bytes. A reading is taken by apps/streetlight_reading.py, loaded for it. One short
log line per reading, alarm and event worth knowing (join, applied setting, ignored downlink, night dimming), never
keys.

Settings (config "settings", interval_s at the top level; all but hysteresis_lux also by the FPort 3 "config" downlink,
applied at once and kept across reboots): interval_s (60), confirmed (false), dusk_lux (50): on below it,
hysteresis_lux (20): off above dusk_lux + hysteresis_lux, dim_level (100, percent), battery_low_v (3.4),
presence_level (100), presence_hold_s (60), night_dim_after_min (300), night_dim_level (50), night_dim_for_min (0).
Calibration (config "calibration"): ina219_shunt_ohm (0.1), lamp_rated_w (36.0, the lamp's power at full level),
battery_divider (the board's), battery_empty_v (3.3) and battery_full_v (4.2), the battery voltages reported as level
1 and 254 to DevStatusReq.
"""
from micropython import const

from apps.runtime import run_slots, send_alarm, send_message
from modules import unload

KIND = "streetlight"
SLOW_FIELDS = ("energy", "ambient_light", "battery")  # take turns when the reading would exceed 24 bytes
_MS_PER_HOUR = const(3600000)
_MS_PER_MIN = const(60000)
_PIR_POLL_MS = const(1000)  # while lit: the PIR holds its output high for seconds, so no presence is missed
_SCHEDULE_POLL_MS = const(60000)  # while lit without a PIR: the schedule counts in minutes


class Streetlight:
    """The lamp controller and meter (set up by apps/streetlight_setup.py: the sensors, lamp, calibration and the
    control state): control(now_ms) sets the level between readings (schedule, presence); a reading
    (apps/streetlight_reading.py) does the dusk/dawn step and reads the values to report."""

    def __init__(self, board, config, store):
        from apps.streetlight_setup import set_up  # at boot only: unloaded after

        set_up(self, board, config, store)
        unload("apps.streetlight_setup")
        del set_up  # the last reference to its module's code: freed before the settings are read
        from settings import start  # at boot only: unloaded once the settings are read

        self.settings = start(config, store, KIND)

    def update_meter(self, now_ms):
        """Energy up to now at the last measured power (the lamp drew it until now), then measure the power now."""
        if self.metered_ms is not None:  # the lamp drew the last measured power since then
            self.energy_wh += self.power_w * (now_ms - self.metered_ms) / _MS_PER_HOUR
        self.metered_ms = now_ms
        self.power_w = max(0.0, self.meter.power_watts())

    def night_dimming(self, now_ms):
        """Whether the night-dimming schedule is in force at now_ms (lamp lit since lit_since_ms)."""
        values = self.settings
        start = self.lit_since_ms + values["night_dim_after_min"] * _MS_PER_MIN
        return start <= now_ms < start + values["night_dim_for_min"] * _MS_PER_MIN

    def control(self, now_ms):
        """While lit: poll the PIR, follow the schedule and presence, re-meter after a level change; returns when to
        run again (None while the lamp is off)."""
        if not self.lamp.on:
            return None
        values = self.settings
        if self.pir is not None:
            sensed = self.pir.sensed()
            if sensed:
                if not self.pir_sensed:
                    self.presence_events += 1
                self.presence_until_ms = now_ms + values["presence_hold_s"] * 1000
            self.pir_sensed = sensed
        night = self.night_dimming(now_ms)
        if night != self.night:
            self.night = night
            print("night dimming: %s" % ("%d%%" % values["night_dim_level"] if night else "over"))
        level = values["night_dim_level"] if night else values["dim_level"]
        if self.presence_until_ms is not None and now_ms < self.presence_until_ms:
            level = max(level, values["presence_level"])
        if level != self.lamp.level_pct:
            self.lamp.set(True, level)
            self.update_meter(now_ms)
        return now_ms + (_PIR_POLL_MS if self.pir is not None else _SCHEDULE_POLL_MS)


App = Streetlight  # startup.py sets the app up at boot: App(board, config, store) takes what it needs from config


def run(app, node):
    """The app's loop, forever: one dusk/dawn step and reading per interval_s slot (apps.runtime.run_slots), the
    level controlled between readings while lit."""
    settings = app.settings
    first_slow = 0

    def step():
        """One reading (apps/streetlight_reading.py, loaded for it), a due lamp-fault alarm sent first."""
        nonlocal first_slow
        from apps.streetlight_reading import reading

        try:
            alarm, message, line, first_slow = reading(app, node, first_slow)
        finally:
            unload("apps.streetlight_reading")
        del reading  # the last reference to its module's code: freed before the messages are sent
        if alarm is not None:  # until acknowledged: an alarm lost on the air goes again with the next reading
            send_alarm(node, app, KIND, alarm[0], 1, alarm[1])
        send_message(node, app, KIND, message, settings["confirmed"], line)

    run_slots(node, settings, step, app.control)
