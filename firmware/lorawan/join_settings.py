"""The network's settings in an accepted JoinAccept, for the sans-IO MAC (lorawan/mac.py): RX1 DR offset and RX2 DR
(DLSettings), the RX1 delay (RxDelay) and the CFList's channels. The MAC imports it once lorawan/join_accept.py has
opened the frame and been unloaded, and unloads it after (modules.unload): a node joins once per boot, and the
JoinAccept's peak (its keys and crypto) is lower without this code. Part of the MAC, it sets the Mac's state."""
from lorawan.events import Joined


def start_session(mac, accept, window):
    """Apply the settings of `accept` (a JoinAccept decrypted and checked by lorawan/join_accept.py, heard in
    RX`window`), then activate the session (its DevAddr): the join is over, [Joined]. A setting out of range is counted
    and left at its default. Activation comes last: a join cut short before (a MemoryError loading this module) leaves
    the node unjoined, to join again, never in a session without the network's settings."""
    offset, rx2_dr = accept[11] >> 4 & 0x07, accept[11] & 0x0F
    if offset <= 5 and mac.region.valid_dr(rx2_dr):
        mac.rx1_dr_offset, mac.rx2_dr = offset, rx2_dr
    else:
        mac.count("bad_dl_settings")
    mac.rx1_delay_ms = 1000 * ((accept[12] & 0x0F) or 1)
    if len(accept) == 33 and not _apply_cflist(mac.region, accept[13:29]):
        mac.count("bad_cflist")
    mac.join_attempts = 0
    joined = [Joined(int.from_bytes(accept[7:11], "little"), mac.dev_nonce - 1, window, mac.data_rate)]
    mac._dev_addr = bytes(accept[7:11])
    return joined


def _apply_cflist(region, cflist):
    """A JoinAccept's 16-byte CFList (type 0: five frequencies for channels 3..7); False if it was not usable."""
    if cflist[15] != 0:
        return False
    freqs = []
    for i in range(0, 15, 3):
        freq_khz = (cflist[i] | cflist[i + 1] << 8 | cflist[i + 2] << 16) // 10
        if freq_khz and not region.valid_frequency(freq_khz):
            return False
        freqs.append(freq_khz)
    for i, freq_khz in enumerate(freqs):
        region.set_channel(len(region.DEFAULT_CHANNELS) + i, freq_khz)
    return True
