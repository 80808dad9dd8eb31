"""A waste container reading (apps.waste): distance, fill level, tilt, temperature and battery, the fire check with
the measured temperature, and the log lines. The app's loop loads this module for each reading and unloads it before
the messages are sent, so its code is not in the heap while the radio works."""
from apps.runtime import battery_level, measure_battery
from apps.waste import KIND, tilt_from_upright
from cbor import encode_reading


def fill_percent(distance_m, depth_m, offset_m):
    """Fill level 0..100 % of a container `depth_m` deep whose sensor sits `offset_m` above the full mark."""
    fill = (depth_m + offset_m - distance_m) / depth_m * 100
    return max(0, min(100, round(fill)))


def reading(app, node):
    """One reading of the Waste `app`, the battery level told to the MAC; returns (the due fire alarm's (message, log
    line), or None; the reading's message; its log line)."""
    distance = app.ranger.distance_m(app.pings)
    tilt = round(tilt_from_upright(app.accelerometer))
    app.last_fill = fill_percent(distance, app.depth_m, app.offset_m)
    volts = measure_battery(app, app.settings["battery_low_v"])
    celsius = app.thermometer.celsius()
    node.mac.battery_level = battery_level(app.battery, volts)
    alarm = None
    if app.fire_due(node.now_ms(), celsius):
        rise_rate = max(-100.0, min(100.0, app.rise_rate))
        alarm = (encode_reading(KIND, "alarm", {"fire": True, "temperature": celsius, "rise_rate": rise_rate}),
                 "alarm: fire: temperature=%.1fC rise=%.1fC/min" % (celsius, rise_rate))
    values = {"fill_level": app.last_fill, "distance": distance, "temperature": celsius, "tilt": tilt,
              "battery": volts, "battery_low": app.battery_low}
    line = "reading fill=%d%% distance=%.3fm temperature=%.1fC tilt=%ddeg battery=%.2fV%s" % (
        app.last_fill, distance, celsius, tilt, volts, " LOW" if app.battery_low else "")
    return alarm, encode_reading(KIND, "reading", values), line
