"""Environment node (school air quality): CO2, temperature and relative humidity from a Sensirion SCD41, and the
battery (with a low flag); one reading over LoRaWAN every `interval_s`. The SCD41 measures periodically (every 5 s) from
boot; a reading waits for the next measurement (up to MEASUREMENT_WAIT_MS) and reads it out.

Ventilate alarm: CO2 over `co2_limit_ppm` starts an episode (it ends once CO2 fell under co2_limit_ppm -
co2_hysteresis_ppm); the "alarm" message (ventilate, co2, co2_limit) goes at once, as a confirmed uplink before the
reading, and with every reading until the network acknowledged it, once per episode (apps.runtime.alarm_due).

Settings (config "settings", interval_s at the top level; all also by the FPort 3 "config" downlink): interval_s (300),
confirmed (false), battery_low_v (3.4), co2_limit_ppm (1000: the German Umweltbundesamt's guide value for classrooms),
co2_hysteresis_ppm (200). Calibration (config "calibration"): battery_divider (the board's), battery_empty_v (3.3),
battery_full_v (4.2).
"""
import time

from micropython import const

from apps.runtime import (alarm_due, battery_level, measure_battery, over_limit, run_slots, send_alarm,
                          send_message)
from cbor import encode_reading
from drivers.scd41 import SCD41

KIND = "environment"
_MEASUREMENT_WAIT_MS = const(12000)  # longer than the SCD41's 5 s measurement interval
_POLL_MS = const(500)


class Environment:
    """The room's sensor; reading() returns the values to report, ventilate_due() whether the alarm is due."""

    def __init__(self, board, config, store):
        from config import battery_calibration, section  # at boot only: settings.start unloads it

        # measure_battery's: the board and its calibration
        self.battery = (board,) + battery_calibration(section(config, "calibration"), board.BATTERY_DIVIDER)
        self.battery_low = False
        self.sensor = SCD41(board.i2c())
        self.sensor.start_periodic_measurement()
        self.alarms_active = self.alarms_acked = 0  # one condition: CO2 over the limit
        self.store = store
        from settings import start  # at boot only: unloaded once the settings are read

        self.settings = start(config, store, KIND)

    def measure(self):
        """(CO2 ppm, °C, %) of the next measurement; OSError when none comes within MEASUREMENT_WAIT_MS."""
        waited = 0
        while not self.sensor.data_ready():
            if waited >= _MEASUREMENT_WAIT_MS:
                raise OSError("SCD41: no measurement within %d ms" % _MEASUREMENT_WAIT_MS)
            time.sleep_ms(_POLL_MS)
            waited += _POLL_MS
        return self.sensor.read_measurement()

    def reading(self):
        co2, celsius, humidity = self.measure()
        volts = measure_battery(self, self.settings["battery_low_v"])
        return {"co2": co2, "temperature": celsius, "humidity": humidity, "battery": volts,
                "battery_low": self.battery_low}

    def ventilate_due(self, co2):
        """Feed a CO2 reading; True while the ventilate alarm is due."""
        values = self.settings
        over = over_limit(self.alarms_active & 1, co2, values["co2_limit_ppm"], values["co2_hysteresis_ppm"])
        return alarm_due(self, over)

    def alarm(self, co2):
        """The "alarm" message's values."""
        return {"ventilate": True, "co2": co2, "co2_limit": self.settings["co2_limit_ppm"]}



def _log_line(values):
    return "reading co2=%dppm temperature=%.1fC humidity=%.1f%% battery=%.2fV%s" % (
        values["co2"], values["temperature"], values["humidity"], values["battery"],
        " LOW" if values["battery_low"] else "")


def _alarm_line(alarm):
    return "alarm: ventilate: co2=%dppm limit=%dppm" % (alarm["co2"], alarm["co2_limit"])


App = Environment  # startup.py sets the app up at boot: App(board, config, store) takes what it needs from config


def run(app, node):
    """The app's loop, forever: one reading per interval_s slot (apps.runtime.run_slots), a due alarm ahead of it."""
    settings = app.settings

    def reading():
        """The reading's message and log line, a due ventilate alarm sent first; its values go with this frame,
        before the reading is sent."""
        values = app.reading()
        node.mac.battery_level = battery_level(app.battery, values["battery"])
        if app.ventilate_due(values["co2"]):
            alarm = app.alarm(values["co2"])
            send_alarm(node, app, KIND, encode_reading(KIND, "alarm", alarm), 1, _alarm_line(alarm))
        return encode_reading(KIND, "reading", values), _log_line(values)

    def step():
        message, line = reading()
        send_message(node, app, KIND, message, settings["confirmed"], line)

    run_slots(node, settings, step)
