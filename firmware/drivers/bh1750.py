"""ROHM BH1750 ambient light sensor on I2C (address 0x23, or 0x5C with ADDR high): continuous high-resolution mode,
lux = 16-bit big-endian count / 1.2."""
import time

from micropython import const

_POWER_ON = const(0x01)
_CONTINUOUS_H_RES = const(0x10)
_FIRST_MEASUREMENT_MS = const(180)  # worst-case H-resolution conversion time


class BH1750:
    def __init__(self, i2c, address=0x23):
        self._i2c, self._address = i2c, address
        self._buf = bytearray(2)
        i2c.writeto(address, bytes((_POWER_ON,)))
        i2c.writeto(address, bytes((_CONTINUOUS_H_RES,)))
        time.sleep_ms(_FIRST_MEASUREMENT_MS)

    def lux(self):
        """The latest measurement in lux."""
        self._i2c.readfrom_into(self._address, self._buf)
        return (self._buf[0] << 8 | self._buf[1]) / 1.2
