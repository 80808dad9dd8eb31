"""A bridge reading (apps.bridge): the strains, a vibration window of the ADXL345 (drivers/vibration.py), tilt, crack
width, temperature and battery, the threshold checks on them, and the reading's log line. The app's loop loads this
module for each reading and unloads it before the messages are sent, so its code is not in the heap while the radio
works; drivers/vibration.py is loaded only while the window is computed."""
from array import array

from micropython import const

from apps.bridge import CHECKS, KIND, SLOW_FIELDS, STRAINS
from apps.runtime import battery_level, fit_reading, measure_battery
from cbor import encode_reading
from drivers.adxl345 import COUNTS_PER_G
from modules import unload

_WINDOW_SAMPLES = const(64)


def reading(app, node, first_slow):
    """One reading of the Bridge `app`, the battery level told to the MAC; returns (the due "alarm" message's values,
    empty when none is due; the bit mask of the episodes it reports; the reading's message (the slow fields from
    SLOW_FIELDS[first_slow] on, apps.runtime.fit_reading); its log line; the slow field to start with next time)."""
    values = app.strains()
    from drivers.vibration import along_x_tilt, sample_window, vibration

    try:
        window = array("f", bytes(4 * _WINDOW_SAMPLES))  # z in g: no float per sample; freed with this reading
        mean_x = sample_window(app.accelerometer, window)
        rms, peak, freq = vibration(window, app.accelerometer.rate_hz, floor=1 / COUNTS_PER_G)
        del window
        tilt = along_x_tilt(mean_x)
    finally:
        unload("drivers.vibration")
    del along_x_tilt, sample_window, vibration  # the last references to its code: freed for the rest of the reading
    volts = measure_battery(app, app.settings["battery_low_v"])
    node.mac.battery_level = battery_level(app.battery, volts)
    values.update(vibration_rms=rms, vibration_peak=peak, vibration_freq=freq, tilt=tilt,
                  crack_width=app.board.crack_gauge_volts() * app.crack_mm_per_v,
                  temperature=app.thermometer.celsius(), battery=volts, battery_low=app.battery_low)
    measured = {"tilt_change": tilt - app.tilt_zero_deg}
    for name in CHECKS:
        if name in values:
            measured[name] = values[name]
    alarm, reported = app.check(measured)
    del measured
    sent, first_slow = fit_reading(KIND, values, SLOW_FIELDS, first_slow)
    message = encode_reading(KIND, "reading", sent)  # before the line is built: not both in the heap
    del sent
    strain = ""
    for name in STRAINS:
        if name in values:
            strain += " %s=%d" % (name, values[name])
    line = ("reading %s vibration rms=%.3fg peak=%.3fg freq=%.1fHz tilt=%.2fdeg crack=%.2fmm temperature=%.1fC "
            "battery=%.2fV%s") % (strain[1:], values["vibration_rms"], values["vibration_peak"],
                                  values["vibration_freq"], values["tilt"], values["crack_width"],
                                  values["temperature"], values["battery"], " LOW" if values["battery_low"] else "")
    return alarm, reported, message, line, first_slow
