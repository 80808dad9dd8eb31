"""Adaptive data rate (ADR) as network servers do it (ChirpStack-like), pure: uplink history in, a decision out.

EU868, 125 kHz data rates only (DR0 SF12 .. DR5 SF7); a node on DR6/DR7 is left alone.

Data rate and TX power, from the best SNR of the history (each record holds the best SNR over the gateways that heard
that uplink, so this is the maximum over the last `MAX_HISTORY` uplinks and their gateways):

    steps = floor((snr_max - REQUIRED_SNR_DB[dr] - margin_db) / STEP_DB)

A positive step first raises the data rate one DR (up to DR5), then lowers the TX power one index (2 dB, up to index 7);
a negative step raises the TX power one index (down to index 0 = max EIRP). The data rate is never lowered here: a node
that loses the network lowers it itself (ADRACKReq back-off). The decision is taken from the first uplink on (a
short history is used as it is), so a node heard well at SF12 goes to SF7 with its first downlink.

NbTrans (repetitions of each unconfirmed uplink), from the packet loss ratio of the uplinks sent with the current
NbTrans (at least `LOSS_MIN_UPLINKS` of them): lost FCnts are the gaps between consecutive received FCnts; a gap of
more than `LOSS_MAX_GAP` is an outage or a counter skip after a reboot (which repetitions do not help), not counted.

    loss <  5 %        NbTrans - 1 (at least 1)
    loss  5 % .. 10 %  NbTrans unchanged
    loss 10 % .. 30 %  NbTrans + 1 (at most MAX_NB_TRANS)
    loss >= 30 %       MAX_NB_TRANS
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

#: Uplinks the decision looks back over.
MAX_HISTORY = 20
#: Demodulation floor (SNR in dB) per EU868 data rate: DR0 SF12 .. DR5 SF7 at 125 kHz, DR6 SF7 at 250 kHz.
REQUIRED_SNR_DB = (-20.0, -17.5, -15.0, -12.5, -10.0, -7.5, -7.5)
#: Highest data rate ADR sets (DR5 = SF7/125 kHz).
ADR_MAX_DR = 5
#: EU868 TX power indexes 0..7: max EIRP (16 dBm) - 2 dB * index.
MAX_TX_POWER_INDEX = 7
MAX_EIRP_DBM = 16
TX_POWER_STEP_DB = 2
#: dB of SNR headroom per step.
STEP_DB = 3.0
DEFAULT_MARGIN_DB = 10.0
MAX_NB_TRANS = 3
LOSS_MIN_UPLINKS = 10
LOSS_MAX_GAP = 8
#: (upper bound of the loss ratio, NbTrans change) rows of the table above; beyond the last row NbTrans is MAX_NB_TRANS.
_LOSS_TABLE = ((0.05, -1), (0.10, 0), (0.30, +1))


@dataclass(frozen=True, slots=True)
class UplinkRecord:
    """One received uplink as ADR sees it: its 32-bit FCnt, the best SNR over its gateways, how many gateways heard
    it, and the NbTrans the node was using when it sent it."""

    fcnt: int
    snr: float
    gateway_count: int
    nb_trans: int = 1


@dataclass(frozen=True, slots=True)
class AdrDecision:
    """New settings for the node, and why: the best SNR, the number of 3 dB steps, the loss ratio (None when too few
    uplinks were sent with the current NbTrans to tell)."""

    dr: int
    tx_power_index: int
    nb_trans: int
    snr_max: float
    steps: int
    loss_ratio: float | None


def required_snr_db(dr: int) -> float:
    """Demodulation floor of an EU868 LoRa data rate (DR0..DR6); ValueError for others."""
    if not 0 <= dr < len(REQUIRED_SNR_DB):
        raise ValueError(f"DR{dr} is not an EU868 LoRa data rate")
    return REQUIRED_SNR_DB[dr]


def tx_power_dbm(tx_power_index: int) -> int:
    """EIRP in dBm of an EU868 TX power index 0..7."""
    if not 0 <= tx_power_index <= MAX_TX_POWER_INDEX:
        raise ValueError(f"TX power index {tx_power_index} is not 0..{MAX_TX_POWER_INDEX}")
    return MAX_EIRP_DBM - TX_POWER_STEP_DB * tx_power_index


_nb_trans_of = operator.attrgetter("nb_trans")
_fcnt_of = operator.attrgetter("fcnt")
_snr_of = operator.attrgetter("snr")


def packet_loss_ratio(history: Sequence[UplinkRecord], nb_trans: int) -> float | None:
    """Share of FCnts missing among the trailing uplinks sent with `nb_trans`; None for fewer than LOSS_MIN_UPLINKS."""
    nb_transes = list(map(_nb_trans_of, history))
    start = 0
    if nb_transes.count(nb_trans) != len(nb_transes):  # else every record is of the tail (the common case)
        start = len(nb_transes)
        while start and nb_transes[start - 1] == nb_trans:
            start -= 1
    fcnts = sorted(set(map(_fcnt_of, history[start:])))
    if len(fcnts) < LOSS_MIN_UPLINKS:
        return None
    if fcnts[-1] - fcnts[0] == len(fcnts) - 1:  # consecutive: nothing lost
        return 0.0
    lost = 0
    for previous, current in zip(fcnts, fcnts[1:]):
        gap = current - previous - 1
        if gap <= LOSS_MAX_GAP:
            lost += gap
    return lost / (lost + len(fcnts))


def nb_trans_for_loss(loss_ratio: float | None, nb_trans: int) -> int:
    """NbTrans after applying the loss table to the current one (unchanged when the loss is unknown)."""
    if loss_ratio is None:
        return nb_trans
    for upper, change in _LOSS_TABLE:
        if loss_ratio < upper:
            return min(MAX_NB_TRANS, max(1, nb_trans + change))
    return MAX_NB_TRANS


def adr_decision(
    history: Sequence[UplinkRecord],
    dr: int,
    tx_power_index: int,
    nb_trans: int,
    margin_db: float = DEFAULT_MARGIN_DB,
) -> AdrDecision | None:
    """New (DR, TX power index, NbTrans) for a node now at `dr`/`tx_power_index`/`nb_trans`, from its last uplinks
    (oldest first; only the last MAX_HISTORY count). None when nothing would change, when there is no history, or when
    the node is on a data rate ADR does not manage (DR6, DR7)."""
    if not 0 <= tx_power_index <= MAX_TX_POWER_INDEX:
        raise ValueError(f"TX power index {tx_power_index} is not 0..{MAX_TX_POWER_INDEX}")
    if not 1 <= nb_trans <= 15:
        raise ValueError(f"NbTrans {nb_trans} is not 1..15")
    history = history[-MAX_HISTORY:]
    if not history or not 0 <= dr <= ADR_MAX_DR:
        return None
    snr_max = max(map(_snr_of, history))
    steps = math.floor((snr_max - REQUIRED_SNR_DB[dr] - margin_db) / STEP_DB)
    new_dr, new_power = dr, tx_power_index
    remaining = steps
    while remaining > 0 and new_dr < ADR_MAX_DR:
        new_dr += 1
        remaining -= 1
    while remaining > 0 and new_power < MAX_TX_POWER_INDEX:
        new_power += 1
        remaining -= 1
    while remaining < 0 and new_power > 0:
        new_power -= 1
        remaining += 1
    loss = packet_loss_ratio(history, nb_trans)
    new_nb_trans = nb_trans_for_loss(loss, nb_trans)
    if (new_dr, new_power, new_nb_trans) == (dr, tx_power_index, nb_trans):
        return None
    return AdrDecision(new_dr, new_power, new_nb_trans, snr_max, steps, loss)
