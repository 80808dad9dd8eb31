"""The bridge app's set-up: its sensors, and its calibration and boot-only setting from config.json, checked (a
ConfigError names the bad value): apps.bridge.Bridge() loads this module while it is set up and unloads it after, as
its code is not needed once the node runs."""
from micropython import const

from config import ConfigError, battery_calibration, number, section
from drivers.adxl345 import ADXL345
from drivers.tmp102 import TMP102

_SAMPLE_RATE_HZ = const(50)  # the ADXL345's output data rate: a reading's vibration window takes 64 / 50 s


def set_up(app, board, config, store):
    """Set up the app's sensors (strain_adcs: None without strain channels, thermometer, accelerometer), its
    calibration from config.json (strain_check_ms, counts_per_ue, zero_ue, tilt_zero_deg,
    crack_mm_per_v, battery), its alarm masks, board and store."""
    calibration = section(config, "calibration")
    app.strain_check_ms = int(number(section(config, "settings"), "strain_check_s", 10, 0, 3600) * 1000)
    channels = int(number(calibration, "strain_channels", 3, 0, 3, "calibration"))
    app.counts_per_ue = number(calibration, "strain_counts_per_ue", 1073.74, 0.001, 1e6, "calibration")
    zero = calibration.get("strain_zero_ue", [0] * channels)
    if type(zero) is not list or len(zero) != channels or any(type(z) not in (int, float) for z in zero):
        raise ConfigError("calibration.strain_zero_ue must be a list of %d numbers" % channels)
    app.zero_ue = zero
    app.tilt_zero_deg = number(calibration, "tilt_zero_deg", 0.0, -90, 90, "calibration")
    app.crack_mm_per_v = number(calibration, "crack_mm_per_v", 10.0, 0.001, 1000, "calibration")
    app.battery = (board,) + battery_calibration(calibration, board.BATTERY_DIVIDER)  # apps.runtime.measure_battery's
    app.battery_low = False
    app.alarms_active = app.alarms_acked = 0  # check i's episode at bit i (apps.runtime.alarm_due)
    app.board, app.store = board, store
    app.strain_adcs = board.strain_adcs(channels) if channels else None
    app.thermometer = TMP102(board.i2c())
    app.accelerometer = ADXL345(board.i2c(), rate_hz=_SAMPLE_RATE_HZ)
