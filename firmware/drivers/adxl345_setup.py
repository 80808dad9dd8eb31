"""Setting an ADXL345 up (drivers.adxl345.ADXL345's constructor loads this module for it and unloads it after): the
chip's id checked, then full-resolution measurement at the output data rate; code that runs once per boot does not
stay in the heap."""
from micropython import const

# registers
_DEVID = const(0x00)
_BW_RATE = const(0x2C)
_POWER_CTL = const(0x2D)
_DATA_FORMAT = const(0x31)
_DEVICE_ID = const(0xE5)
_MEASURE = const(0x08)
_FULL_RES_16G = const(0x0B)  # FULL_RES, +-16 g


def set_up(i2c, address, rate_hz):
    """Check that the chip at `address` is an ADXL345 (OSError if not) and start its measurement at `rate_hz` (12.5,
    25, 50, 100, 200 or 400 Hz)."""
    if i2c.readfrom_mem(address, _DEVID, 1)[0] != _DEVICE_ID:
        raise OSError("no ADXL345 at 0x%02x" % address)
    rate_codes = {12.5: 0x07, 25: 0x08, 50: 0x09, 100: 0x0A, 200: 0x0B, 400: 0x0C}  # output data rate: BW_RATE
    i2c.writeto_mem(address, _BW_RATE, bytes((rate_codes[rate_hz],)))
    i2c.writeto_mem(address, _DATA_FORMAT, bytes((_FULL_RES_16G,)))
    i2c.writeto_mem(address, _POWER_CTL, bytes((_MEASURE,)))
