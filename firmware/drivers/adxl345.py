"""Analog Devices ADXL345 3-axis accelerometer on I2C (address 0x53), full-resolution mode (256 counts per g at every
range): a sample is 3 little-endian int16 (x, y, z) from DATAX0, taken at the output data rate `rate_hz`.

What the apps make of the samples lives with them, so each loads only its own: the waste container's tilt from upright
(apps/waste.py), the bridge's vibration window and tilt along the span (drivers/vibration.py)."""
import struct

from micropython import const

# registers
_DEVID = const(0x00)
_BW_RATE = const(0x2C)
_POWER_CTL = const(0x2D)
_DATA_FORMAT = const(0x31)
_DATAX0 = const(0x32)
_DEVICE_ID = const(0xE5)
_MEASURE = const(0x08)
_FULL_RES_16G = const(0x0B)  # FULL_RES, +-16 g
COUNTS_PER_G = 256


class ADXL345:
    def __init__(self, i2c, address=0x53, rate_hz=50):
        self._i2c, self._address = i2c, address
        self._buf = bytearray(6)
        if i2c.readfrom_mem(address, _DEVID, 1)[0] != _DEVICE_ID:
            raise OSError("no ADXL345 at 0x%02x" % address)
        self.rate_hz = rate_hz
        rate_codes = {12.5: 0x07, 25: 0x08, 50: 0x09, 100: 0x0A, 200: 0x0B, 400: 0x0C}  # output data rate: BW_RATE
        i2c.writeto_mem(address, _BW_RATE, bytes((rate_codes[rate_hz],)))
        i2c.writeto_mem(address, _DATA_FORMAT, bytes((_FULL_RES_16G,)))
        i2c.writeto_mem(address, _POWER_CTL, bytes((_MEASURE,)))

    def counts(self):
        """One sample (x, y, z) in counts."""
        self._i2c.readfrom_mem_into(self._address, _DATAX0, self._buf)
        return struct.unpack_from("<3h", self._buf)
