"""Sensirion SCD41 CO2 sensor (photoacoustic NDIR, with temperature and humidity) on I2C (address 0x62).

Commands are 16-bit big-endian words; answers are 16-bit words, each followed by its CRC-8 (polynomial 0x31, initial
value 0xFF), read 1 ms after the command. start_periodic_measurement gives a measurement every 5 s (the low power
variant every 30 s) until stop_periodic_measurement (which takes 500 ms); get_data_ready_status says whether one is
waiting; read_measurement gives CO2 (ppm), temperature (-45 + 175 * word / 65535 °C) and relative humidity
(100 * word / 65535 %). While measuring periodically the sensor takes only those commands. A word with a wrong CRC
raises an OSError naming the word."""
import time

from micropython import const

_START_PERIODIC_MEASUREMENT = const(0x21B1)
_START_LOW_POWER_PERIODIC_MEASUREMENT = const(0x21AC)
_STOP_PERIODIC_MEASUREMENT = const(0x3F86)
_GET_DATA_READY_STATUS = const(0xE4B8)
_READ_MEASUREMENT = const(0xEC05)
_COMMAND_MS = const(1)  # execution time of the reading commands
_STOP_MS = const(500)  # stop_periodic_measurement's execution time


def crc8(data, start=0, end=2):
    """Sensirion's CRC-8 over data[start:end]."""
    crc = 0xFF
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


class SCD41:
    def __init__(self, i2c, address=0x62):
        self._i2c, self._address = i2c, address
        self._command = bytearray(2)
        self._answer = bytearray(9)
        self._one_word = memoryview(self._answer)[:3]

    def _send(self, command):
        self._command[0], self._command[1] = command >> 8, command & 0xFF
        self._i2c.writeto(self._address, self._command)

    def _word(self, index):
        at = 3 * index
        if crc8(self._answer, at, at + 2) != self._answer[at + 2]:
            raise OSError("SCD41 answer word %d fails its CRC" % index)
        return self._answer[at] << 8 | self._answer[at + 1]

    def start_periodic_measurement(self, low_power=False):
        """Measure every 5 s (low_power: every 30 s) from now on; stops a measurement left running first (the
        sensor keeps measuring across a reset of the MCU and would refuse the start)."""
        self.stop_periodic_measurement()
        self._send(_START_LOW_POWER_PERIODIC_MEASUREMENT if low_power else _START_PERIODIC_MEASUREMENT)

    def stop_periodic_measurement(self):
        self._send(_STOP_PERIODIC_MEASUREMENT)
        time.sleep_ms(_STOP_MS)

    def data_ready(self):
        """Whether a measurement is waiting to be read."""
        self._send(_GET_DATA_READY_STATUS)
        time.sleep_ms(_COMMAND_MS)
        self._i2c.readfrom_into(self._address, self._one_word)
        return self._word(0) & 0x07FF != 0

    def read_measurement(self):
        """(CO2 ppm, temperature °C, relative humidity %) of the waiting measurement (OSError when there is none: the
        sensor does not acknowledge)."""
        self._send(_READ_MEASUREMENT)
        time.sleep_ms(_COMMAND_MS)
        self._i2c.readfrom_into(self._address, self._answer)
        co2, temperature, humidity = self._word(0), self._word(1), self._word(2)
        return co2, -45 + 175 * temperature / 65535, 100 * humidity / 65535
