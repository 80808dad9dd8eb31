"""Avia HX711 24-bit bridge ADC (strain gauges): channel A at gain 128. Several chips share one clock pin and each has
its own data pin; a chip is ready when its data line is low, then 24 clock pulses shift its two's complement count out
MSB first and a 25th selects channel A / gain 128 for the next conversion (10 samples per second)."""
import time

from micropython import const

_READY_TIMEOUT_MS = const(400)  # more than 3 conversion periods at 10 SPS


class HX711Bank:
    def __init__(self, clock, data_pins):
        self._clock, self._data = clock, data_pins
        clock(0)

    def read(self):
        """One conversion of every chip: a list of signed counts."""
        waited = 0
        for pin in self._data:  # until every chip has a conversion ready: a data line once low stays low until read
            while pin():
                if waited >= _READY_TIMEOUT_MS:
                    raise OSError("HX711 not ready after %d ms" % _READY_TIMEOUT_MS)  # unplugged, or powered down
                time.sleep_ms(10)
                waited += 10
        values = [0] * len(self._data)
        for _ in range(24):
            self._clock(1)
            self._clock(0)
            for i, pin in enumerate(self._data):
                values[i] = values[i] << 1 | pin()
        self._clock(1)
        self._clock(0)
        for i in range(len(values)):  # in place: no second list, no comprehension's code
            if values[i] & 0x800000:
                values[i] -= 0x1000000
        return values
