"""The streetlight app's calibration and boot-only setting from config.json, checked (a ConfigError names the bad
value): apps.streetlight.Streetlight() loads this module while it is set up and unloads it after, as its code is not
needed once the node runs."""
from apps.runtime import Battery
from config import number, section


def set_up(app, board, config):
    """Set the app's hysteresis_lux, lamp_rated_w and battery from config.json; returns the INA219's shunt in ohm."""
    calibration = section(config, "calibration")
    app.hysteresis_lux = number(section(config, "settings"), "hysteresis_lux", 20, 0, 65535)
    shunt_ohm = number(calibration, "ina219_shunt_ohm", 0.1, 0.0001, 10, "calibration")
    app.lamp_rated_w = number(calibration, "lamp_rated_w", 36.0, 0.1, 400, "calibration")
    app.battery = Battery(board, calibration)
    return shunt_ohm
