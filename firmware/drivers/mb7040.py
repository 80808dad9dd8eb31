"""MaxBotix I2CXL-MaxSonar-WR (MB7040) weather-resistant ultrasonic range finder on I2C (address 0x70): the range
command 0x51 starts a ping, the range is ready within 100 ms as a 2-byte big-endian count of centimetres.

Used for the waste container's fill level: distance_m() is the median of several pings, so a spurious echo (a bag caught
under the lid, condensation) does not move the reading."""
import time

from micropython import const

_RANGE_COMMAND = const(0x51)
_PING_MS = const(100)  # ranging time of one ping


def median(values):
    """The median of a non-empty list (the mean of the middle two for an even count)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


class MB7040:
    def __init__(self, i2c, address=0x70):
        self._i2c, self._address = i2c, address
        self._buf = bytearray(2)

    def distance_m(self, pings=5):
        """The median of `pings` pings, in metres (each ping: the range command, then its range in centimetres once
        ranged)."""
        ranges = []
        for _ in range(pings):
            self._i2c.writeto(self._address, bytes((_RANGE_COMMAND,)))
            time.sleep_ms(_PING_MS)
            self._i2c.readfrom_into(self._address, self._buf)
            ranges.append(self._buf[0] << 8 | self._buf[1])
        return median(ranges) / 100
