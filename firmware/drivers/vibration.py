"""The bridge's accelerometer window (ADXL345 samples of z at its output data rate) and the vibration figures computed
from it on the node: RMS and peak of the deviation from the window's mean (gravity and tilt removed), and the dominant
frequency as the strongest Goertzel bin (1 .. n/2 - 1); the tilt along the span from the window's mean x."""
import math
import time

from drivers.adxl345 import COUNTS_PER_G


def sample_window(accelerometer, zs):
    """Fill `zs` (an array("f"), reused for every window) with samples of the ADXL345's z in g at its rate_hz; returns
    the mean x count over them."""
    period_us = round(1000000 / accelerometer.rate_hz)
    xs = 0
    for i in range(len(zs)):
        x, _y, z = accelerometer.counts()
        xs += x
        zs[i] = z / COUNTS_PER_G
        time.sleep_us(period_us)
    return xs / len(zs)


def along_x_tilt(mean_x_counts):
    """Degrees the x axis is raised above the horizontal, from its mean count (1 g = COUNTS_PER_G counts)."""
    return math.degrees(math.asin(max(-1, min(1, mean_x_counts / COUNTS_PER_G))))  # int bounds: no boxed floats


def vibration(samples, rate_hz, floor=0.0):
    """(rms, peak, dominant frequency in Hz) of `samples` (in g, a list or an array) taken at `rate_hz`; the frequency
    is 0 when the RMS is at or below `floor` (no vibration to speak of)."""
    n = len(samples)
    mean = sum(samples) / n
    squares, peak = 0.0, 0.0
    for s in samples:
        d = s - mean
        squares += d * d
        if abs(d) > peak:
            peak = abs(d)
    rms = math.sqrt(squares / n)
    if rms <= floor:
        return rms, peak, 0.0
    best_bin, best_power = 0, 0.0
    for k in range(1, n // 2):
        coeff = 2 * math.cos(2 * math.pi * k / n)
        s1 = s2 = 0.0
        for s in samples:
            s0 = s - mean + coeff * s1 - s2
            s2, s1 = s1, s0
        power = s1 * s1 + s2 * s2 - coeff * s1 * s2
        if power > best_power:
            best_bin, best_power = k, power
    return rms, peak, best_bin * rate_hz / n
