"""LoRa PHY timing (Semtech AN1200.13), in integer microseconds: symbol time, low-data-rate optimisation and time on air."""


def symbol_us(sf, bw_khz):
    """Duration of one symbol: 2^SF / BW."""
    return (1 << sf) * 1000 // bw_khz


def low_data_rate(sf, bw_khz):
    """LowDataRateOptimize is required when a symbol lasts 16 ms or more (SF11/SF12 at 125 kHz)."""
    return symbol_us(sf, bw_khz) >= 16000


def time_on_air_us(payload_len, sf, bw_khz, coding_rate=5, preamble_len=8, crc=True, explicit_header=True):
    """Time on air of a packet of `payload_len` bytes; coding_rate is 5..8 for 4/5..4/8."""
    tsym = symbol_us(sf, bw_khz)
    de = 2 if low_data_rate(sf, bw_khz) else 0
    bits = 8 * payload_len - 4 * sf + 28 + (16 if crc else 0) - (0 if explicit_header else 20)
    per_block = 4 * (sf - de)
    blocks = max(-(-bits // per_block), 0)
    payload_symbols = 8 + blocks * coding_rate
    # Preamble: (Npreamble + 4.25) symbols, kept in quarter symbols to stay exact.
    return (4 * preamble_len + 17) * tsym // 4 + payload_symbols * tsym
