"""TI INA219 current/power monitor on I2C (address 0x40), read for the lamp's power: big-endian 16-bit registers
behind a register pointer.

Calibration: the calibration register is 4096 for any shunt, which makes Current_LSB = 10 µV / R_shunt (the current
register then equals the shunt-voltage register) and Power_LSB = 20 x Current_LSB. With the common 0.1 ohm shunt that is
100 µA and 2 mW per bit (±3.2 A full scale, 131 W power register range); a lamp drawing more needs a smaller shunt,
given as `shunt_ohm` (config calibration "ina219_shunt_ohm"). Configuration: 32 V bus range, PGA /8 (±320 mV), 12-bit
conversions, shunt and bus continuous (0x399F, the reset value).
"""
from micropython import const

# registers
_CONFIG = const(0)
_POWER = const(3)
_CALIBRATION = const(5)
_CONFIG_32V_320MV_12BIT_CONTINUOUS = const(0x399F)
_CALIBRATION_4096 = const(4096)


class INA219:
    def __init__(self, i2c, address=0x40, shunt_ohm=0.1):
        if not shunt_ohm > 0:
            raise ValueError("INA219 shunt_ohm must be > 0")
        self._i2c, self._address = i2c, address
        self._buf = bytearray(2)
        self.power_lsb_w = 20 * 10e-6 / shunt_ohm  # 20 x Current_LSB
        for register, value in ((_CONFIG, _CONFIG_32V_320MV_12BIT_CONTINUOUS), (_CALIBRATION, _CALIBRATION_4096)):
            self._buf[0], self._buf[1] = value >> 8, value & 0xFF
            i2c.writeto_mem(address, register, self._buf)

    def power_watts(self):
        """Active power drawn through the shunt (the lamp's), in watts."""
        self._i2c.readfrom_mem_into(self._address, _POWER, self._buf)
        return (self._buf[0] << 8 | self._buf[1]) * self.power_lsb_w
