"""The waste app's set-up: its sensors, and its calibration and boot-only settings from config.json, checked (a
ConfigError names the bad value): apps.waste.Waste() loads this module while it is set up and unloads it after, as its
code is not needed once the node runs."""
from apps.waste import TiltWatch
from config import battery_calibration, number, section
from drivers.adxl345 import ADXL345
from drivers.mb7040 import MB7040
from drivers.tmp102 import TMP102


def set_up(app, board, config, store):
    """Set up the app's sensors (ranger, thermometer, accelerometer), its calibration and settings from config.json
    (fast_fill_pct, tilt_poll_s, depth_m, offset_m, pings, battery, the emptying's TiltWatch), the fire check's state
    (Waste.fire_due), its alarm masks, last fill level and store."""
    settings, calibration = section(config, "settings"), section(config, "calibration")
    app.fast_fill_pct = number(settings, "fast_fill_pct", 80, 0, 100)
    app.tilt_poll_s = number(settings, "tilt_poll_s", 30, 1, 3600)
    tip_deg = number(settings, "tip_deg", 60, 10, 180)
    upright_deg = number(settings, "upright_deg", 20, 0, tip_deg)
    app.depth_m = number(calibration, "container_depth_m", 1.2, 0.1, 10, "calibration")
    app.offset_m = number(calibration, "sensor_offset_m", 0.1, 0, 5, "calibration")
    app.pings = int(number(calibration, "pings", 5, 1, 15, "calibration"))
    app.battery = (board,) + battery_calibration(calibration, board.BATTERY_DIVIDER)  # apps.runtime.measure_battery's
    app.battery_low = False
    app.tilt = TiltWatch(tip_deg, upright_deg)
    app.ranger = MB7040(board.i2c())
    app.thermometer = TMP102(board.i2c())
    app.accelerometer = ADXL345(board.i2c())
    app.rise_base = None  # (ms, °C) the temperature's rise is measured from
    app.rise_rate = 0.0  # °C/min
    app.hot = app.rising = False  # over fire_temp_c, rising faster than fire_rise_c_per_min (with hysteresis)
    app.alarms_active = app.alarms_acked = 0  # one condition: fire (apps.runtime.alarm_due)
    app.last_fill = 0
    app.store = store
