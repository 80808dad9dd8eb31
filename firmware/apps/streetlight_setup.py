"""The streetlight app's set-up: its sensors, lamp and control state, and its calibration and boot-only setting
from config.json, checked (a ConfigError names the bad value): apps.streetlight.Streetlight() loads this module while
it is set up and unloads it after, as its code is not needed once the node runs."""
from config import battery_calibration, number, section
from drivers.bh1750 import BH1750
from drivers.ina219 import INA219


def set_up(app, board, config, store):
    """Set up the app's sensors (light, meter, pir: None without one), lamp, calibration and setting from
    config.json (hysteresis_lux, lamp_rated_w, battery), energy (kept in the store), control state and alarm masks."""
    calibration = section(config, "calibration")
    app.hysteresis_lux = number(section(config, "settings"), "hysteresis_lux", 20, 0, 65535)
    shunt_ohm = number(calibration, "ina219_shunt_ohm", 0.1, 0.0001, 10, "calibration")
    app.lamp_rated_w = number(calibration, "lamp_rated_w", 36.0, 0.1, 400, "calibration")
    app.battery = (board,) + battery_calibration(calibration, board.BATTERY_DIVIDER)  # apps.runtime.measure_battery's
    app.battery_low = False
    app.store = store
    app.light = BH1750(board.i2c())
    app.meter = INA219(board.i2c(), shunt_ohm=shunt_ohm)
    app.lamp = board.lamp()
    app.pir = board.presence() if hasattr(board, "presence") else None
    app.energy_wh = store.get("energy_wh", 0.0)
    app.readings = 0
    app.power_w = 0.0
    app.metered_ms = None  # when the power was last measured: the energy counts from it
    app.alarms_active = app.alarms_acked = 0  # one condition: the lamp fault (apps.runtime.alarm_due)
    app.lit_since_ms = None  # the dusk switch-on: the schedule counts from it
    app.presence_until_ms = None
    app.presence_events = 0
    app.pir_sensed = False
    app.night = False
