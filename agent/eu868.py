"""EU868 regional parameters the network side needs: data rates, downlink payload limits, receive windows, the
channels a JoinAccept's CFList adds (reference/lorawan.md)."""

from __future__ import annotations

#: Data rate -> (spreading factor, bandwidth in Hz). DR0..DR5 are SF12..SF7 at 125 kHz, DR6 is SF7 at 250 kHz.
DATA_RATES: dict[int, tuple[int, int]] = {
    0: (12, 125_000), 1: (11, 125_000), 2: (10, 125_000), 3: (9, 125_000), 4: (8, 125_000), 5: (7, 125_000),
    6: (7, 250_000),
}
_DR_BY_MODULATION = {modulation: dr for dr, modulation in DATA_RATES.items()}
MAX_DR = 6
#: Room for FOpts + FRMPayload per data rate (MACPayload limit M minus DevAddr, FCtrl, FCnt and FPort; no repeater).
MAX_PAYLOAD: dict[int, int] = {0: 51, 1: 51, 2: 51, 3: 115, 4: 222, 5: 222, 6: 222}

RECEIVE_DELAY1_S = 1
JOIN_ACCEPT_DELAY1_S = 5
JOIN_ACCEPT_DELAY2_S = 6
RX2_FREQUENCY_HZ = 869_525_000
RX2_DR = 0
#: Downlink transmit power (dBm EIRP) and RF chain of the gateway.
DOWNLINK_POWER_DBM = 14
DOWNLINK_RF_CHAIN = 0
#: The five extra channels every JoinAccept gives a node (channels 3..7).
CFLIST_FREQUENCIES_HZ = (867_100_000, 867_300_000, 867_500_000, 867_700_000, 867_900_000)


def data_rate(sf: int | None, bw_hz: int | None) -> int | None:
    """The EU868 data rate of a LoRa modulation; None when it is not one of DR0..DR6 (or unknown)."""
    return _DR_BY_MODULATION.get((sf, bw_hz))


def rx1_data_rate(uplink_dr: int, rx1_dr_offset: int) -> int:
    """The RX1 data rate: the uplink's lowered by the offset, not below DR0."""
    return max(0, uplink_dr - rx1_dr_offset)


def fits(phy_len: int, dr: int) -> bool:
    """True when a downlink PHYPayload of `phy_len` bytes is within the data rate's limit (MHDR, DevAddr, FCtrl,
    FCnt, FPort and MIC take 13 bytes besides FOpts and FRMPayload)."""
    return phy_len <= MAX_PAYLOAD[dr] + 13
