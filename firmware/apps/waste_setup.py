"""The waste app's calibration and boot-only settings from config.json, checked (a ConfigError names the bad value):
apps.waste.Waste() loads this module while it is set up and unloads it after, as its code is not needed once the
node runs."""
from apps.runtime import Battery
from config import number, section


def set_up(app, board, config):
    """Set the app's fast_fill_pct, tilt_poll_s, depth_m, offset_m, pings and battery from config.json; returns the
    emptying's tilts (tip_deg, upright_deg)."""
    settings, calibration = section(config, "settings"), section(config, "calibration")
    app.fast_fill_pct = number(settings, "fast_fill_pct", 80, 0, 100)
    app.tilt_poll_s = number(settings, "tilt_poll_s", 30, 1, 3600)
    tip_deg = number(settings, "tip_deg", 60, 10, 180)
    upright_deg = number(settings, "upright_deg", 20, 0, tip_deg)
    app.depth_m = number(calibration, "container_depth_m", 1.2, 0.1, 10, "calibration")
    app.offset_m = number(calibration, "sensor_offset_m", 0.1, 0, 5, "calibration")
    app.pings = int(number(calibration, "pings", 5, 1, 15, "calibration"))
    app.battery = Battery(board, calibration)
    return tip_deg, upright_deg
