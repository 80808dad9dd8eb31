"""Analog Devices ADXL345 3-axis accelerometer on I2C (address 0x53), full-resolution mode (256 counts per g at every
range): a sample is 3 little-endian int16 (x, y, z) from DATAX0, taken at the output data rate `rate_hz`. The chip is
checked and set up by drivers/adxl345_setup.py, loaded for that.

What the apps make of the samples lives with them, so each loads only its own: the waste container's tilt from upright
(apps/waste.py), the bridge's vibration window and tilt along the span (drivers/vibration.py)."""
import struct

from micropython import const

from modules import unload

_DATAX0 = const(0x32)  # the first sample register (x, y, z follow, each 2 bytes)
COUNTS_PER_G = 256


class ADXL345:
    def __init__(self, i2c, address=0x53, rate_hz=50):
        from drivers.adxl345_setup import set_up  # at boot only: unloaded after

        set_up(i2c, address, rate_hz)
        unload("drivers.adxl345_setup")
        self._i2c, self._address, self.rate_hz = i2c, address, rate_hz
        self._buf = bytearray(6)

    def counts(self):
        """One sample (x, y, z) in counts."""
        self._i2c.readfrom_mem_into(self._address, _DATAX0, self._buf)
        return struct.unpack_from("<3h", self._buf)
