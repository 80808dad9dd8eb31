"""The starting state of a sans-IO MAC (lorawan/mac.py's Mac) and of its EU868 region (lorawan/region.py), set by
their constructors, which load this module and unload it after: each object is built once, at boot, so this code need
not stay in the heap."""
from array import array

from micropython import const

from modules import unload

_IDLE = const(0)  # Mac.state when nothing is in flight (lorawan/mac.py)
_MAX_CHANNELS = const(16)  # lorawan/region.py's
_SUB_BAND_COUNT = const(6)
_SLOTS = const(13)


def set_up_mac(mac, region, data_rate, tx_power_dbm, adr):
    """Mac(region, data_rate, tx_power_dbm, adr): idle, not activated, no session yet. This module is forgotten first,
    so that it is unloaded however this ends."""
    unload(__name__)
    mac.region = region
    mac.data_rate = data_rate
    mac.default_tx_power_dbm = tx_power_dbm
    mac.adr = adr
    mac.battery_level = 255  # DevStatusAns: 0 external power, 1..254 level, 255 unknown
    mac.counters = {}
    mac.state = _IDLE
    mac._dev_addr = None
    mac._otaa = None
    mac.dev_nonce = 0  # next DevNonce (OTAA)
    mac.join_attempts = 0  # failed attempts since the last successful join
    mac.next_join_ms = 0
    mac._join_since = None
    mac._pending = None  # (fport, confirmed, fcnt) of the data frame in flight; None when idle or joining
    mac._attempt = 0
    mac._reset_session()


def set_up_region(region, seed):
    """EU868(seed): the default channels, no transmission counted yet. This module is forgotten first, so that it is
    unloaded however this ends."""
    unload(__name__)
    region.band_free_at = [0] * _SUB_BAND_COUNT
    # per sub-band: the newest slot counted, and a ring of the airtime (µs) started in each of the last _SLOTS slots
    # (slot n at n % _SLOTS), which note_transmission zeroes as the newest slot moves on
    region.band_newest_slot = array("i", bytearray(4 * _SUB_BAND_COUNT))
    region.band_airtime = array("i", bytearray(4 * _SUB_BAND_COUNT * _SLOTS))
    region.aggregate_free_at = 0
    region._rand = (seed & 0xFFFFFFFF) or 1
    region.channel_freqs = array("i", bytearray(4 * _MAX_CHANNELS))
    region.dl_freqs = array("i", bytearray(4 * _MAX_CHANNELS))
    region.channel_min_dr = bytearray(_MAX_CHANNELS)
    region.channel_max_dr = bytearray(_MAX_CHANNELS)
    region.reset_channels()
