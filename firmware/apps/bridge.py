"""Bridge condition-monitoring node: strain on up to 3 channels (HX711 bank, per-asset zero offsets), a vibration window
of the ADXL345's vertical axis computed on the node (RMS, peak, dominant frequency), tilt along the span (from the same
window), crack width (potentiometric gauge on an ADC), temperature (TMP102) and battery (with a low flag); one reading
over LoRaWAN every `interval_s`. A reading carries strain and vibration peak every time and as many of the other fields
as fit in 24 bytes (apps.runtime.fit_reading), taking turns: all eleven fields take up to 43 bytes. A reading is
taken by apps/bridge_reading.py, loaded for it.

Threshold alarms, checked with every reading: |strain| of a channel over `strain_limit_ue`, vibration RMS over
`vibration_rms_limit`, vibration peak over `vibration_peak_limit`, |tilt - tilt at installation| over `tilt_limit`,
crack width over `crack_limit`; the strains also every `strain_check_s` between readings (a heavy vehicle crosses in
seconds; the vibration window is only sampled with a reading). Each check trips above its limit and clears only below
limit - hysteresis_pct % of it; a check that trips starts an episode (apps.runtime.alarm_due): the "alarm" message names
the tripped quantities with their values and goes at once as a confirmed uplink, and with every reading until
acknowledged.

Settings (config "settings", interval_s at the top level; all also by the FPort 3 "config" downlink): interval_s (600),
confirmed (false), battery_low_v (3.4), strain_limit_ue (500), vibration_rms_limit (0.1 g), vibration_peak_limit
(0.3 g), tilt_limit (1.0°), crack_limit (1.0 mm), hysteresis_pct (10); strain_check_s (10; 0: with readings only)
only in config.json. Calibration (config "calibration"):
strain_channels (3), strain_counts_per_ue (1073.74: quarter bridge, gauge factor 2, HX711 gain 128), strain_zero_ue
([0, 0, 0]: each channel's strain at installation, subtracted), tilt_zero_deg (0.0: the tilt at installation),
crack_mm_per_v (10.0), battery_divider (the board's), battery_empty_v (3.3), battery_full_v (4.2).
"""
from apps.runtime import alarm_due, over_limit, run_slots, send_alarm, send_message
from cbor import encode_reading
from modules import unload

KIND = "bridge"
# every reading carries the strains and the vibration peak; these take turns in the rest of the 24 bytes
SLOW_FIELDS = ("vibration_rms", "vibration_freq", "tilt", "crack_width", "temperature", "battery", "battery_low")
STRAINS = ("strain_1", "strain_2", "strain_3")  # each strain channel's field
# the threshold checks: each alarm field (the strains first, as in STRAINS) and, at the same index, the setting that
# limits its magnitude (two flat tuples take less heap than a tuple of pairs)
CHECKS = ("strain_1", "strain_2", "strain_3", "vibration_rms", "vibration_peak", "tilt_change", "crack_width")
LIMITS = ("strain_limit_ue", "strain_limit_ue", "strain_limit_ue", "vibration_rms_limit", "vibration_peak_limit",
          "tilt_limit", "crack_limit")


def strains(counts, counts_per_ue, zero_ue):
    """Strain in µε per channel: counts scaled, minus the channel's zero offset."""
    for i in range(len(counts)):  # in place (a list of the HX711 bank's): no list, no comprehension's code
        counts[i] = round(counts[i] / counts_per_ue - zero_ue[i])
    return counts


class Bridge:
    """The bridge's sensors and alarm checks (set up by apps/bridge_setup.py: the sensors, calibration, the alarm
    masks alarms_active and alarms_acked); a reading is taken by apps/bridge_reading.py (loaded for it),
    strain_check() checks the strains between readings."""

    def __init__(self, board, config, store):
        from apps.bridge_setup import set_up  # at boot only: unloaded after

        set_up(self, board, config, store)
        unload("apps.bridge_setup")
        del set_up  # the last reference to its module's code: freed before the settings are read
        from settings import start  # at boot only: unloaded once the settings are read

        self.settings = start(config, store, KIND)

    def strains(self):
        """{"strain_1": µε, ...} of the channels fitted."""
        values = {}
        if self.strain_adcs is not None:
            for i, ue in enumerate(strains(self.strain_adcs.read(), self.counts_per_ue, self.zero_ue)):
                values[STRAINS[i]] = ue
        return values

    def check(self, measured):
        """Feed {alarm field: value} to the threshold checks (a check whose field is missing is left as it was);
        returns (the alarm's values, the bit mask of the episodes it reports), the values empty when no alarm is
        due."""
        settings = self.settings
        alarm, due = {}, 0
        for i, name in enumerate(CHECKS):
            if name in measured:
                value, limit = measured[name], settings[LIMITS[i]]
                hysteresis = limit * settings["hysteresis_pct"] / 100
                if alarm_due(self, over_limit(self.alarms_active >> i & 1, abs(value), limit, hysteresis), i):
                    alarm[name] = value
                    due |= 1 << i
        return alarm, due

    def strain_check(self, now_ms):
        """Between readings: (the "alarm" message's values, the bit mask of the episodes it reports) of the strain
        checks, and when to check next (None: only with readings)."""
        if self.strain_adcs is None or not self.strain_check_ms:
            return {}, 0, None
        alarm, episodes = self.check(self.strains())
        return alarm, episodes, now_ms + self.strain_check_ms


def _send_alarm(app, node, alarm, reported):
    """Send the "alarm" message `alarm` (apps.runtime.send_alarm) for the episodes in the bit mask `reported`."""
    line = "alarm:"
    for name in CHECKS:
        if name in alarm:
            line += " %s=%g" % (name, alarm[name])
    send_alarm(node, app, KIND, encode_reading(KIND, "alarm", alarm), reported, line)


App = Bridge  # startup.py sets the app up at boot: App(board, config, store) takes what it needs from config


def run(app, node):
    """The app's loop, forever: one reading per interval_s slot (apps.runtime.run_slots), a due threshold alarm
    ahead of it, the strains checked between readings; the slow fields take turns."""
    settings = app.settings
    first_slow = 0

    def step():
        """One reading (apps/bridge_reading.py, loaded for it), a due alarm sent first."""
        nonlocal first_slow
        from apps.bridge_reading import reading

        try:
            alarm, reported, message, line, first_slow = reading(app, node, first_slow)
        finally:
            unload("apps.bridge_reading")
        del reading  # the last reference to its module's code: freed before the messages are sent
        if alarm:
            _send_alarm(app, node, alarm, reported)
        send_message(node, app, KIND, message, settings["confirmed"], line)

    def between(now_ms):
        alarm, reported, next_ms = app.strain_check(now_ms)
        if alarm:
            _send_alarm(app, node, alarm, reported)
        return next_ms

    run_slots(node, settings, step, between)
