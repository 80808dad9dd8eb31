"""EU868 regional parameters for the MAC: channels (the three defaults, CFList and NewChannelReq ones, DlChannelReq RX1
frequencies, the enabled mask), data rates, payload limits, RX2, radio settings, pseudo-random channel choice among the
enabled channels, duty-cycle bookkeeping and time on air. Pure state; times are plain millisecond counts from the caller.
The rules only MAC commands and the join need (CFList, LinkADRReq checks, TX power) are in lorawan/commands.py and
lorawan/join.py. Tables are bytes and arrays: on the node a tuple of tuples costs a heap block per tuple.

Duty cycle per sub-band, two rules together: after a transmission its sub-band stays closed for (divisor - 1) x its time
on air (which spreads transmissions out), and the airtime started in the sub-band during the last hour, plus the next
transmission's, stays within the sub-band's share of an hour (which holds in every one-hour window, where the first rule
alone can overshoot by one transmission).
"""
from array import array

from micropython import const

from drivers.lora_airtime import symbol_us, time_on_air_us
from lorawan.events import MacError

# DR -> spreading factor; every DR is 125 kHz wide but DR6 (SF7 at 250 kHz)
SPREADING_FACTORS = b"\x0c\x0b\x0a\x09\x08\x07\x07"
_WIDE_DR = const(6)
# DR -> max FRMPayload + FOpts bytes (repeater-compatible values)
MAX_PAYLOAD = bytes((51, 51, 51, 115, 222, 222, 222))
DEFAULT_CHANNELS = (868100, 868300, 868500)
# Integer constants are const() with a leading underscore: their values go into the code, not the module's globals.
_MAX_CHANNELS = const(16)
_DEFAULT_MAX_DR = const(5)
_RX2_FREQ_KHZ = const(869525)
_RX2_DR = const(0)
_SYNC_WORD = const(0x34)
_PREAMBLE_LEN = const(8)
_CODING_RATE = const(5)  # 4/5
# Sub-bands (ETSI EN 300 220 as LoRaWAN EU868 uses them), three numbers each: low kHz, high kHz, duty-cycle divisor
# (100 means 1 %)
SUB_BANDS = array("i", (863000, 865000, 1000, 865000, 868000, 100, 868000, 868600, 100, 868700, 869200, 1000,
                        869400, 869650, 10, 869700, 870000, 100))
_SUB_BAND_COUNT = const(6)
# Duty cycle as ETSI measures it, over any hour: a sub-band's airtime started in the last hour, plus the next
# transmission, stays within 1/divisor of an hour. Kept per sub-band in a ring of the _SLOTS slots of _DUTY_SLOT_MS an
# hour touches (twelve whole ones and the current).
_DUTY_WINDOW_MS = const(3600000)
_DUTY_SLOT_MS = const(300000)
_SLOTS = const(13)


def sub_band(freq_khz):
    """Number (0..5, the index into SUB_BANDS / 3) of the sub-band holding `freq_khz`; None in none of them (no uplink
    channel may use it: valid_frequency)."""
    for band in range(_SUB_BAND_COUNT):
        if SUB_BANDS[3 * band] <= freq_khz < SUB_BANDS[3 * band + 1]:
            return band
    return None


def _bandwidth_khz(dr):
    return 250 if dr == _WIDE_DR else 125


class EU868:
    """Channel plan and duty-cycle state of one EU868 node. Channel i is defined when channel_freqs[i] (kHz) is not 0
    and then carries channel_min_dr[i]..channel_max_dr[i]; dl_freqs[i] is its RX1 frequency if DlChannelReq set one
    (0: the uplink's own)."""

    DEFAULT_CHANNELS = DEFAULT_CHANNELS
    MAX_PAYLOAD = MAX_PAYLOAD
    RX2_FREQ_KHZ = _RX2_FREQ_KHZ
    RX2_DR = _RX2_DR

    def __init__(self, seed=1):
        from lorawan.mac_setup import set_up_region  # at boot only: it unloads itself

        set_up_region(self, seed)

    def reset_channels(self):
        """The channel plan of a device that has not joined: the default channels only, no DutyCycleReq limit."""
        self.channel_mask = 0
        for index in range(_MAX_CHANNELS):
            self.set_channel(index, DEFAULT_CHANNELS[index] if index < len(DEFAULT_CHANNELS) else 0)
        self.aggregate_divisor = 1  # DutyCycleReq: 1 / 2^MaxDCycle, 1 = no extra limit

    def set_channel(self, index, freq_khz, min_dr=0, max_dr=_DEFAULT_MAX_DR):
        """Define (freq_khz > 0) and enable, or remove (0), channel `index`; its RX1 frequency becomes its own again."""
        self.channel_freqs[index] = freq_khz
        self.channel_min_dr[index], self.channel_max_dr[index] = min_dr, max_dr
        self.dl_freqs[index] = 0
        if freq_khz:
            self.channel_mask |= 1 << index
        else:
            self.channel_mask &= ~(1 << index)

    def carries(self, index, dr):
        """Whether channel `index` is defined and carries data rate `dr` (enabled or not)."""
        return self.channel_freqs[index] and self.channel_min_dr[index] <= dr <= self.channel_max_dr[index]

    def rx1_freq(self, tx_freq_khz):
        """The RX1 frequency after an uplink on tx_freq_khz: the same, unless DlChannelReq set another."""
        for index in range(_MAX_CHANNELS):
            if self.dl_freqs[index] and self.channel_freqs[index] == tx_freq_khz:
                return self.dl_freqs[index]
        return tx_freq_khz

    def random(self, below):
        """Pseudo-random int in [0, below) (xorshift32, seeded at construction)."""
        x = self._rand
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rand = x
        return x % below

    def next_channel(self, dr, now_ms, airtime_us):
        """(freq_khz, 0) for a pseudo-randomly chosen channel that may carry a transmission of airtime_us at DR `dr`
        now, or (None, ms when one frees up)."""
        free = []
        earliest = None
        for index in range(_MAX_CHANNELS):
            if not (self.channel_mask >> index & 1 and self.carries(index, dr)):
                continue
            freq = self.channel_freqs[index]
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
            raise MacError("no_channel_for_dr")
        return None, earliest

    def _budget_free_at(self, band, now_ms, airtime_us):
        """When `band`'s airtime over the last hour leaves room for airtime_us more (now_ms if it does now); None if
        it never can. Slots that overlap the hour count whole, so the estimate errs on the safe side."""
        budget_us = _DUTY_WINDOW_MS * 1000 // SUB_BANDS[3 * band + 2]  # (its duty-cycle divisor)
        if airtime_us > budget_us:
            return None
        ring, newest = band * _SLOTS, self.band_newest_slot[band]
        first = max((now_ms - _DUTY_WINDOW_MS) // _DUTY_SLOT_MS, newest - _SLOTS + 1)
        used = 0
        for slot in range(first, newest + 1):
            used += self.band_airtime[ring + slot % _SLOTS]
        if used + airtime_us <= budget_us:
            return now_ms
        for slot in range(first, newest + 1):  # the oldest slot leaves the hour first
            used -= self.band_airtime[ring + slot % _SLOTS]
            if used + airtime_us <= budget_us:
                return (slot + 1) * _DUTY_SLOT_MS + _DUTY_WINDOW_MS

    def note_transmission(self, freq_khz, end_ms, airtime_us):
        """Close the transmission's sub-band for (divisor - 1) x time on air after it ended, and count its airtime in
        the sub-band's hour (in the slot of its start, which end_ms - airtime never puts too early)."""
        band = sub_band(freq_khz)
        self.band_free_at[band] = end_ms + -(-airtime_us * (SUB_BANDS[3 * band + 2] - 1) // 1000)
        self.aggregate_free_at = end_ms + -(-airtime_us * (self.aggregate_divisor - 1) // 1000)
        slot = (end_ms - airtime_us // 1000) // _DUTY_SLOT_MS
        ring, newest = band * _SLOTS, self.band_newest_slot[band]
        if slot > newest:  # the slots the ring moves past are reused, emptied
            for stale in range(max(newest + 1, slot - _SLOTS + 1), slot + 1):
                self.band_airtime[ring + stale % _SLOTS] = 0
            self.band_newest_slot[band] = slot
        if slot > newest - _SLOTS:  # (a slot older than the ring's is out of the hour already)
            self.band_airtime[ring + slot % _SLOTS] += airtime_us

    def valid_dr(self, dr):
        return 0 <= dr < len(SPREADING_FACTORS)

    def airtime_us(self, phy_len, dr, crc=True):
        """Time on air of a PHYPayload of `phy_len` bytes at data rate `dr` (uplinks carry a CRC, downlinks do not)."""
        return time_on_air_us(phy_len, SPREADING_FACTORS[dr], _bandwidth_khz(dr), _CODING_RATE, _PREAMBLE_LEN, crc)

    def symbol_us(self, dr):
        return symbol_us(SPREADING_FACTORS[dr], _bandwidth_khz(dr))

    def radio_config(self, freq_khz, dr, output_power, uplink):
        """Settings for the modem's configure(): uplinks plain IQ with CRC, downlink windows inverted IQ without CRC."""
        return {"freq_khz": freq_khz, "sf": SPREADING_FACTORS[dr], "bw": str(_bandwidth_khz(dr)),
                "coding_rate": _CODING_RATE, "preamble_len": _PREAMBLE_LEN, "output_power": output_power,
                "syncword": _SYNC_WORD, "invert_iq_tx": False, "invert_iq_rx": not uplink, "crc_en": uplink}

    def rx1_dr(self, dr, offset):
        return max(0, dr - offset)

    def valid_frequency(self, freq_khz, uplink=True):
        """Whether `freq_khz` may serve: a downlink frequency anywhere in the band, an uplink channel's only in one of
        SUB_BANDS (the node keeps their duty cycles; a frequency between them would leave it no rule to send by)."""
        return 863000 <= freq_khz <= 870000 if not uplink else sub_band(freq_khz) is not None
