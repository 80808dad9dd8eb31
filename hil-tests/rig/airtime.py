"""LoRa time on air (Semtech AN1200.13, as in reference/airtime.md) and the per-SF demodulation floor.

Pure functions of the modulation settings; the SX1276 model, the air and the packet forwarder all use them.
"""
from __future__ import annotations

import math

# Lowest SNR (dB) at which the SX1276 still demodulates, per spreading factor (datasheet table 13).
DEMOD_FLOOR_DB = {6: -5.0, 7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}
NOISE_FIGURE_DB = 6.0


def symbol_time_us(sf: int, bw_hz: int) -> float:
    """Duration of one LoRa symbol in µs."""
    return (1 << sf) * 1e6 / bw_hz


def needs_low_data_rate_optimize(sf: int, bw_hz: int) -> bool:
    """LowDataRateOptimize is mandated when a symbol lasts 16 ms or more (SF11/SF12 at 125 kHz)."""
    return symbol_time_us(sf, bw_hz) >= 16000.0


def time_on_air_us(payload_len: int, sf: int, bw_hz: int, cr: int = 1, preamble: int = 8, crc: bool = True,
                   implicit_header: bool = False, low_data_rate_optimize: bool | None = None) -> int:
    """Time on air in µs (rounded) of a packet of payload_len bytes; cr 1..4 means 4/5..4/8.

    low_data_rate_optimize=None applies the rule (symbol time >= 16 ms); a radio passes its register bit.
    """
    tsym = symbol_time_us(sf, bw_hz)
    de = needs_low_data_rate_optimize(sf, bw_hz) if low_data_rate_optimize is None else low_data_rate_optimize
    t_preamble = (preamble + 4.25) * tsym
    numerator = 8 * payload_len - 4 * sf + 28 + 16 * int(crc) - 20 * int(implicit_header)
    n_payload = 8 + max(math.ceil(numerator / (4 * (sf - 2 * int(de)))) * (cr + 4), 0)
    return round(t_preamble + n_payload * tsym)


def noise_floor_dbm(bw_hz: int) -> float:
    """Thermal noise floor of the receiver: -174 dBm/Hz + 10 log10(BW) + noise figure."""
    return -174.0 + 10.0 * math.log10(bw_hz) + NOISE_FIGURE_DB
