"""EU868 regional parameters for the MAC: channels (the three defaults, CFList and NewChannelReq ones, DlChannelReq RX1
frequencies, the enabled mask), data rates, payload limits, RX2, radio settings, pseudo-random channel choice among the
enabled channels, duty-cycle bookkeeping and time on air. Pure state; times are plain millisecond counts from the caller.

Duty cycle per sub-band, two rules together: after a transmission its sub-band stays closed for (divisor - 1) x its time
on air (which spreads transmissions out), and the airtime started in the sub-band during the last hour, plus the next
transmission's, stays within the sub-band's share of an hour (which holds in every one-hour window, where the first rule
alone can overshoot by one transmission).
"""
from micropython import const

from drivers.lora_airtime import symbol_us, time_on_air_us

# DR -> (spreading factor, bandwidth kHz)
DATA_RATES = ((12, 125), (11, 125), (10, 125), (9, 125), (8, 125), (7, 125), (7, 250))
# DR -> max FRMPayload + FOpts bytes (repeater-compatible values)
MAX_PAYLOAD = (51, 51, 51, 115, 222, 222, 222)
DEFAULT_CHANNELS = (868100, 868300, 868500)
# Integer constants are const() with a leading underscore: their values go into the code, not the module's globals.
_MAX_CHANNELS = const(16)
_RX2_FREQ_KHZ = const(869525)
_RX2_DR = const(0)
_MAX_EIRP_DBM = const(16)
_SYNC_WORD = const(0x34)
_PREAMBLE_LEN = const(8)
_CODING_RATE = const(5)  # 4/5
# Sub-bands (ETSI EN 300 220 as LoRaWAN EU868 uses them): (low kHz, high kHz, duty-cycle divisor: 100 means 1 %)
SUB_BANDS = ((863000, 865000, 1000), (865000, 868000, 100), (868000, 868600, 100), (868700, 869200, 1000),
             (869400, 869650, 10), (869700, 870000, 100))
_BW_NAMES = {125: "125", 250: "250", 500: "500"}
# Duty cycle as ETSI measures it, over any hour: a sub-band's airtime started in the last hour, plus the next
# transmission, stays within 1/divisor of an hour. Kept per sub-band in slots of _DUTY_SLOT_MS.
_DUTY_WINDOW_MS = const(3600000)
_DUTY_SLOT_MS = const(300000)


class RegionError(ValueError):
    """A request the region cannot honour; `reason` is a short snake_case label."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def sub_band(freq_khz):
    """Index into SUB_BANDS of the sub-band holding `freq_khz`."""
    for index, (low, high, _) in enumerate(SUB_BANDS):
        if low <= freq_khz < high:
            return index
    raise RegionError("frequency_outside_band")


class EU868:
    """Channel plan and duty-cycle state of one EU868 node."""

    DEFAULT_CHANNELS = DEFAULT_CHANNELS
    RX2_FREQ_KHZ = _RX2_FREQ_KHZ
    RX2_DR = _RX2_DR

    def __init__(self, seed=1):
        self.band_free_at = [0] * len(SUB_BANDS)
        self.band_slots = [{} for _ in SUB_BANDS]  # per sub-band: slot number -> airtime (µs) started in it
        self.aggregate_free_at = 0
        self._rand = (seed & 0xFFFFFFFF) or 1
        self.reset_channels()

    def reset_channels(self):
        """The channel plan of a device that has not joined: the default channels only, no DutyCycleReq limit."""
        # channel index -> [freq_khz, min_dr, max_dr] or None
        self.channels = [[f, 0, 5] for f in DEFAULT_CHANNELS] + [None] * (_MAX_CHANNELS - len(DEFAULT_CHANNELS))
        self.channel_mask = (1 << len(DEFAULT_CHANNELS)) - 1
        self.dl_freq = {}  # channel index -> RX1 frequency set by DlChannelReq
        self.aggregate_divisor = 1  # DutyCycleReq: 1 / 2^MaxDCycle, 1 = no extra limit

    def set_channel(self, index, freq_khz, min_dr=0, max_dr=5):
        """Define (freq_khz > 0) and enable, or remove (0), channel `index`; its RX1 frequency becomes its own again."""
        self.channels[index] = [freq_khz, min_dr, max_dr] if freq_khz else None
        self.dl_freq.pop(index, None)
        if freq_khz:
            self.channel_mask |= 1 << index
        else:
            self.channel_mask &= ~(1 << index)

    def apply_cflist(self, cflist):
        """A JoinAccept's CFList (type 0: five frequencies for channels 3..7); False if it was not usable."""
        if len(cflist) != 16 or cflist[15] != 0:
            return False
        freqs = [(cflist[i] | cflist[i + 1] << 8 | cflist[i + 2] << 16) // 10 for i in range(0, 15, 3)]
        if any(f and not self.valid_frequency(f) for f in freqs):
            return False
        for i, freq_khz in enumerate(freqs):
            self.set_channel(len(DEFAULT_CHANNELS) + i, freq_khz)
        return True

    def enable_default_channels(self):
        self.channel_mask |= (1 << len(DEFAULT_CHANNELS)) - 1

    def defined_mask(self):
        """Bit i set for every channel i that is defined."""
        return sum(1 << i for i in range(_MAX_CHANNELS) if self.channels[i] is not None)

    def serves(self, mask, dr):
        """Whether a channel in `mask` can carry data rate `dr`."""
        return any(mask >> i & 1 and self.channels[i][1] <= dr <= self.channels[i][2]
                   for i in range(_MAX_CHANNELS) if self.channels[i] is not None)

    def rx1_freq(self, tx_freq_khz):
        """The RX1 frequency after an uplink on tx_freq_khz: the same, unless DlChannelReq set another."""
        for index, freq in self.dl_freq.items():
            if self.channels[index][0] == tx_freq_khz:
                return freq
        return tx_freq_khz

    def random(self, below):
        """Pseudo-random int in [0, below) (xorshift32, seeded at construction)."""
        x = self._rand
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rand = x
        return x % below

    def usable(self, index, dr):
        channel = self.channels[index]
        return channel is not None and self.channel_mask >> index & 1 and channel[1] <= dr <= channel[2]

    def next_channel(self, dr, now_ms, airtime_us):
        """(freq_khz, 0) for a pseudo-randomly chosen channel that may carry a transmission of airtime_us at DR `dr`
        now, or (None, ms when one frees up)."""
        free = []
        earliest = None
        for index in range(_MAX_CHANNELS):
            if not self.usable(index, dr):
                continue
            freq = self.channels[index][0]
            band = sub_band(freq)
            budget_at = self._budget_free_at(band, now_ms, airtime_us)
            if budget_at is None:
                continue
            free_at = max(self.band_free_at[band], self.aggregate_free_at, budget_at)
            if free_at <= now_ms:
                free.append(freq)
            elif earliest is None or free_at < earliest:
                earliest = free_at
        if free:
            return free[self.random(len(free))], 0
        if earliest is None:
            raise RegionError("no_channel_for_dr")
        return None, earliest

    def _budget_free_at(self, band, now_ms, airtime_us):
        """When `band`'s airtime over the last hour leaves room for airtime_us more (now_ms if it does now); None if
        it never can. Slots that overlap the hour count whole, so the estimate errs on the safe side."""
        budget_us = _DUTY_WINDOW_MS * 1000 // SUB_BANDS[band][2]
        if airtime_us > budget_us:
            return None
        slots = self.band_slots[band]
        first = (now_ms - _DUTY_WINDOW_MS) // _DUTY_SLOT_MS
        for index in [i for i in slots if i < first]:
            del slots[index]
        used = sum(slots.values())
        if used + airtime_us <= budget_us:
            return now_ms
        for index in sorted(slots):  # the oldest slot leaves the hour first
            used -= slots[index]
            if used + airtime_us <= budget_us:
                return (index + 1) * _DUTY_SLOT_MS + _DUTY_WINDOW_MS

    def note_transmission(self, freq_khz, end_ms, airtime_us):
        """Close the transmission's sub-band for (divisor - 1) x time on air after it ended, and count its airtime in
        the sub-band's hour (in the slot of its start, which end_ms - airtime never puts too early)."""
        band = sub_band(freq_khz)
        self.band_free_at[band] = end_ms + -(-airtime_us * (SUB_BANDS[band][2] - 1) // 1000)
        self.aggregate_free_at = end_ms + -(-airtime_us * (self.aggregate_divisor - 1) // 1000)
        slot = (end_ms - airtime_us // 1000) // _DUTY_SLOT_MS
        slots = self.band_slots[band]
        slots[slot] = slots.get(slot, 0) + airtime_us

    @staticmethod
    def valid_dr(dr):
        return 0 <= dr < len(DATA_RATES)

    @staticmethod
    def max_payload(dr):
        return MAX_PAYLOAD[dr]

    @staticmethod
    def airtime_us(phy_len, dr, crc=True):
        """Time on air of a PHYPayload of `phy_len` bytes at data rate `dr` (uplinks carry a CRC, downlinks do not)."""
        sf, bw = DATA_RATES[dr]
        return time_on_air_us(phy_len, sf, bw, _CODING_RATE, _PREAMBLE_LEN, crc)

    @staticmethod
    def symbol_us(dr):
        sf, bw = DATA_RATES[dr]
        return symbol_us(sf, bw)

    @staticmethod
    def tx_power_dbm(index):
        """LinkADRReq TXPower index -> EIRP dBm (MaxEIRP - 2 dB per step), None if not a valid index."""
        return _MAX_EIRP_DBM - 2 * index if 0 <= index <= 7 else None

    @staticmethod
    def radio_config(freq_khz, dr, output_power, uplink):
        """Settings for the modem's configure(): uplinks plain IQ with CRC, downlink windows inverted IQ without CRC."""
        sf, bw = DATA_RATES[dr]
        return {"freq_khz": freq_khz, "sf": sf, "bw": _BW_NAMES[bw], "coding_rate": _CODING_RATE,
                "preamble_len": _PREAMBLE_LEN, "output_power": output_power, "syncword": _SYNC_WORD,
                "invert_iq_tx": False, "invert_iq_rx": not uplink, "crc_en": uplink}

    @staticmethod
    def rx1_dr(dr, offset):
        return max(0, dr - offset)

    @staticmethod
    def valid_frequency(freq_khz):
        return 863000 <= freq_khz <= 870000
