"""TI INA219 current/power monitor on I2C (address 0x40), read for the lamp's power: big-endian 16-bit registers
behind a register pointer.

Calibration: the calibration register is 4096 for any shunt, which makes Current_LSB = 10 µV / R_shunt (the current
register then equals the shunt-voltage register) and Power_LSB = 20 x Current_LSB. With the common 0.1 ohm shunt that is
100 µA and 2 mW per bit (±3.2 A full scale, 131 W power register range); a lamp drawing more needs a smaller shunt,
given as `shunt_ohm` (config calibration "ina219_shunt_ohm"). Configuration: 32 V bus range, PGA /8 (±320 mV), 12-bit
conversions, shunt and bus continuous (0x399F, the reset value). Both are written by drivers/ina219_setup.py, loaded
for that.
"""
from micropython import const

from modules import unload

_POWER = const(3)  # the power register


class INA219:
    def __init__(self, i2c, address=0x40, shunt_ohm=0.1):
        from drivers.ina219_setup import set_up  # at boot only: unloaded after

        self._i2c, self._address = i2c, address
        self._buf = bytearray(2)
        self.power_lsb_w = set_up(i2c, address, shunt_ohm, self._buf)
        unload("drivers.ina219_setup")

    def power_watts(self):
        """Active power drawn through the shunt (the lamp's), in watts."""
        self._i2c.readfrom_mem_into(self._address, _POWER, self._buf)
        return (self._buf[0] << 8 | self._buf[1]) * self.power_lsb_w
