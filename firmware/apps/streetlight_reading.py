"""A streetlight reading (apps.streetlight): the dusk/dawn step, the meter, the values to report and their log line,
and a lamp-fault alarm. The app's loop loads this module for each reading and unloads it before the messages are
sent, so its code is not in the heap while the radio works.

A lamp whose power draw is implausible for its commanded state (on: under FAULT_FRACTION of lamp_rated_w times the
level; off: over OFF_LIMIT_W) is a fault: its "alarm" message is due once per fault episode until the network
acknowledged it (apps.runtime.alarm_due)."""
from micropython import const

from apps.runtime import alarm_due, battery_level, fit_reading, measure_battery
from apps.streetlight import KIND, SLOW_FIELDS
from cbor import encode_reading

_ENERGY_SAVE_EVERY = const(10)  # readings between energy writes to flash
FAULT_FRACTION = 0.3  # a lit lamp drawing less than this share of its expected power is faulty
OFF_LIMIT_W = 5.0  # a switched-off lamp drawing more than this is faulty (stuck relay)


def reading(app, node, first_slow):
    """One reading of the Streetlight `app`: switch at dusk or dawn, control the level, meter, and tell the MAC the
    battery level; returns (the due lamp-fault alarm's (message, log line), or None; the reading's message (the slow
    fields from slow_fields[first_slow] on, apps.runtime.fit_reading); its log line; the slow field to start with
    next time)."""
    now_ms = node.now_ms()
    settings, lamp = app.settings, app.lamp
    lux = app.light.lux()
    if lamp.on and lux > settings["dusk_lux"] + app.hysteresis_lux:
        lamp.set(False, 0)
        app.lit_since_ms = app.presence_until_ms = None
        app.pir_sensed = app.night = False
    elif not lamp.on and lux < settings["dusk_lux"]:
        app.lit_since_ms = now_ms
        lamp.set(True, settings["dim_level"])
    app.control(now_ms)
    app.update_meter(now_ms)
    app.readings += 1
    if app.readings % _ENERGY_SAVE_EVERY == 0:
        app.store.put("energy_wh", app.energy_wh)
        app.store.flush()
    presence, app.presence_events = min(65535, app.presence_events), 0
    volts = measure_battery(app, settings["battery_low_v"])
    node.mac.battery_level = battery_level(app.battery, volts)
    values = {"lamp_on": lamp.on, "dim_level": lamp.level_pct, "power": app.power_w, "energy": app.energy_wh,
              "ambient_light": min(65535, lux), "battery": volts, "battery_low": app.battery_low, "presence": presence}
    alarm = lamp_fault(app, values)
    if alarm is not None:
        alarm = encode_reading(KIND, "alarm", alarm), "alarm: lamp fault: power=%.1fW expected=%.1fW dim=%d%%" % (
            alarm["power"], alarm["expected_power"], alarm["dim_level"])
    sent, first_slow = fit_reading(KIND, values, SLOW_FIELDS, first_slow)
    line = "reading lamp=%s dim=%d%% power=%.1fW energy=%dWh light=%dlx battery=%.2fV%s presence=%d" % (
        "on" if values["lamp_on"] else "off", values["dim_level"], values["power"], round(values["energy"]),
        round(values["ambient_light"]), values["battery"], " LOW" if values["battery_low"] else "",
        values["presence"])
    return alarm, encode_reading(KIND, "reading", sent), line, first_slow


def lamp_fault(app, values):
    """The "alarm" message's values while `values` (a reading) show a lamp fault whose alarm the network has not
    acknowledged yet, else None."""
    expected_w = app.lamp_rated_w * values["dim_level"] / 100 if values["lamp_on"] else 0.0
    power_w = values["power"]
    if values["lamp_on"]:
        faulty = power_w < FAULT_FRACTION * expected_w
    else:
        faulty = power_w > OFF_LIMIT_W
    if not alarm_due(app, faulty):
        return None
    return {"lamp_fault": True, "power": min(400.0, power_w), "expected_power": min(400.0, expected_w),
            "dim_level": values["dim_level"]}
