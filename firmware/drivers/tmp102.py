"""TI TMP102 temperature sensor on I2C (address 0x48): the temperature register (pointer 0) holds a 12-bit two's
complement count of 0.0625 °C, left-justified in two big-endian bytes."""
from micropython import const


_TEMPERATURE_REGISTER = const(0x00)
DEGREES_PER_COUNT = 0.0625


class TMP102:
    def __init__(self, i2c, address=0x48):
        self._i2c, self._address = i2c, address
        self._buf = bytearray(2)

    def celsius(self):
        self._i2c.readfrom_mem_into(self._address, _TEMPERATURE_REGISTER, self._buf)
        count = (self._buf[0] << 4) | (self._buf[1] >> 4)
        if count & 0x800:
            count -= 0x1000
        return count * DEGREES_PER_COUNT
