"""ADR's other side for the sans-IO MAC (lorawan/mac.py): the device's steps back when no downlink comes. The MAC
imports this module for a step (rare: many frames without any downlink) and unloads it after (modules.unload). Part
of the MAC, it sets the Mac's and the region's state."""


def adr_backoff(mac, due):
    """The ADR back-off steps not yet taken of the `due` ones at this ADR_ACK_CNT (the MAC takes one per ADR_ACK_DELAY
    frames without a downlink from ADR_ACK_LIMIT + ADR_ACK_DELAY on): TX power to the default first, then one DR lower
    per step down to DR0, then the default channels on again and NbTrans 1."""
    while mac._adr_steps < due:
        mac._adr_steps += 1
        if mac.tx_power_dbm != mac.default_tx_power_dbm:
            mac.tx_power_dbm = mac.default_tx_power_dbm
        elif mac.data_rate > 0:
            mac.data_rate -= 1
        else:
            region = mac.region
            region.channel_mask |= (1 << len(region.DEFAULT_CHANNELS)) - 1
            mac.nb_trans = 1
        mac.count("adr_backoff")
