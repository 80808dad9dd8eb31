"""TI TMP102 temperature sensor on I2C (address 0x48): the temperature register (pointer 0) holds a 12-bit two's
complement count of 1/16 °C, left-justified in two big-endian bytes."""
import struct

from micropython import const

_TEMPERATURE_REGISTER = const(0x00)


class TMP102:
    def __init__(self, i2c, address=0x48):
        self._i2c, self._address = i2c, address
        self._buf = bytearray(2)

    def celsius(self):
        self._i2c.readfrom_mem_into(self._address, _TEMPERATURE_REGISTER, self._buf)
        return (struct.unpack(">h", self._buf)[0] >> 4) / 16  # the 12-bit count, its sign kept by the shift
