"""ADR: data rate and TX power from the best SNR and the margin, NbTrans from packet loss, bounds, and convergence of a
strong SF12 node to SF7 with its first decision."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dos_agent.adr import (
    ADR_MAX_DR,
    LOSS_MIN_UPLINKS,
    MAX_HISTORY,
    MAX_NB_TRANS,
    MAX_TX_POWER_INDEX,
    AdrDecision,
    UplinkRecord,
    adr_decision,
    nb_trans_for_loss,
    packet_loss_ratio,
    required_snr_db,
    tx_power_dbm,
)


def history(snrs: list[float], first_fcnt: int = 0, nb_trans: int = 1) -> list[UplinkRecord]:
    return [
        UplinkRecord(fcnt=first_fcnt + i, snr=snr, gateway_count=1, nb_trans=nb_trans) for i, snr in enumerate(snrs)
    ]


def test_tables() -> None:
    assert [required_snr_db(dr) for dr in range(6)] == [-20.0, -17.5, -15.0, -12.5, -10.0, -7.5]
    assert [tx_power_dbm(i) for i in range(8)] == [16, 14, 12, 10, 8, 6, 4, 2]
    with pytest.raises(ValueError):
        required_snr_db(7)
    with pytest.raises(ValueError):
        tx_power_dbm(8)


def test_strong_node_at_sf12_goes_to_sf7_and_lowers_power_with_the_first_uplink() -> None:
    # steps = floor((12 - (-20) - 10) / 3) = 7: five DR steps to DR5, then two power steps.
    decision = adr_decision(history([12.0]), dr=0, tx_power_index=0, nb_trans=1, margin_db=10)
    assert decision == AdrDecision(dr=5, tx_power_index=2, nb_trans=1, snr_max=12.0, steps=7, loss_ratio=None)


def test_one_step_per_three_db_of_headroom() -> None:
    # DR0 needs -20 dB; with a 10 dB margin, -7 dB gives floor(3 / 3) = 1 step, -7.1 dB gives 0 steps.
    assert adr_decision(history([-7.0]), 0, 0, 1, 10) == AdrDecision(1, 0, 1, -7.0, 1, None)
    assert adr_decision(history([-7.1]), 0, 0, 1, 10) is None
    # A bigger margin is more careful.
    assert adr_decision(history([-7.0]), 0, 0, 1, 15) is None


def test_best_snr_of_the_last_twenty_uplinks_counts() -> None:
    old_strong = history([10.0] + [-12.0] * MAX_HISTORY)
    # The 10 dB uplink is 21st from the end: only -12 dB counts -> floor((-12 + 20 - 10) / 3) = -1, nothing to raise.
    assert adr_decision(old_strong, 0, 0, 1, 10) is None
    recent_strong = history([-12.0] * (MAX_HISTORY - 1) + [10.0])
    decision = adr_decision(recent_strong, 0, 0, 1, 10)
    assert decision is not None and decision.snr_max == 10.0 and decision.dr == 5


def test_negative_steps_raise_power_but_never_lower_the_data_rate() -> None:
    # DR5 needs -7.5 dB: -10 dB gives floor((-10 + 7.5 - 10) / 3) = -5 steps.
    decision = adr_decision(history([-10.0]), dr=5, tx_power_index=3, nb_trans=1, margin_db=10)
    assert decision is not None
    assert (decision.dr, decision.tx_power_index, decision.steps) == (5, 0, -5)
    assert adr_decision(history([-10.0]), dr=5, tx_power_index=0, nb_trans=1, margin_db=10) is None


def test_power_stops_at_the_lowest_index() -> None:
    decision = adr_decision(history([30.0]), dr=5, tx_power_index=6, nb_trans=1, margin_db=0)
    assert decision is not None and decision.tx_power_index == MAX_TX_POWER_INDEX
    assert adr_decision(history([30.0]), dr=5, tx_power_index=MAX_TX_POWER_INDEX, nb_trans=1, margin_db=0) is None


def test_no_decision_without_history_or_on_data_rates_adr_does_not_manage() -> None:
    assert adr_decision([], 0, 0, 1) is None
    assert adr_decision(history([12.0]), 6, 0, 1) is None
    with pytest.raises(ValueError):
        adr_decision(history([12.0]), 0, 8, 1)
    with pytest.raises(ValueError):
        adr_decision(history([12.0]), 0, 0, 0)


def test_packet_loss_ratio_counts_missing_fcnts() -> None:
    received = [r for r in history([0.0] * 20) if r.fcnt not in (4, 11)]  # 2 of 20 lost
    assert packet_loss_ratio(received, 1) == pytest.approx(2 / 20)
    assert packet_loss_ratio(history([0.0] * 20), 1) == 0.0
    # Too few uplinks to tell.
    assert packet_loss_ratio(history([0.0] * (LOSS_MIN_UPLINKS - 1)), 1) is None
    # Repetitions (NbTrans) of one FCnt count once.
    repeated = history([0.0] * 12) + history([0.0] * 12)
    assert packet_loss_ratio(repeated, 1) == 0.0


def test_a_counter_skip_is_not_loss() -> None:
    before = history([0.0] * 10, first_fcnt=0)
    after_reboot = history([0.0] * 10, first_fcnt=100)  # the node skipped ahead after a reboot
    assert packet_loss_ratio(before + after_reboot, 1) == 0.0


def test_loss_only_counts_uplinks_sent_with_the_current_nb_trans() -> None:
    lossy_old = [r for r in history([0.0] * 20, nb_trans=1) if r.fcnt % 3 != 0]
    clean_new = history([0.0] * 12, first_fcnt=20, nb_trans=2)
    assert packet_loss_ratio(lossy_old + clean_new, 2) == 0.0
    assert packet_loss_ratio(lossy_old + history([0.0] * 5, first_fcnt=20, nb_trans=2), 2) is None


@pytest.mark.parametrize(
    ("loss", "current", "expected"),
    [(0.0, 1, 1), (0.0, 3, 2), (0.049, 2, 1), (0.05, 2, 2), (0.099, 1, 1), (0.10, 1, 2), (0.29, 3, 3),
     (0.30, 1, 3), (1.0, 1, 3), (None, 2, 2)],
)
def test_nb_trans_table(loss: float | None, current: int, expected: int) -> None:
    assert nb_trans_for_loss(loss, current) == expected


def test_lossy_link_raises_nb_trans_even_when_rate_and_power_stay() -> None:
    lossy = [r for r in history([-15.0] * 20) if r.fcnt not in (3, 9, 15)]  # 3 of 20 lost: 15 %
    decision = adr_decision(lossy, dr=0, tx_power_index=0, nb_trans=1, margin_db=10)
    assert decision is not None
    assert (decision.dr, decision.tx_power_index, decision.nb_trans) == (0, 0, 2)
    assert decision.loss_ratio == pytest.approx(3 / 20)


snr_values = st.floats(-25.0, 15.0, allow_nan=False)


@settings(max_examples=200)
@given(
    st.lists(snr_values, min_size=1, max_size=30),
    st.integers(0, ADR_MAX_DR),
    st.integers(0, MAX_TX_POWER_INDEX),
    st.integers(1, MAX_NB_TRANS),
    st.floats(0.0, 15.0),
)
def test_decisions_stay_in_bounds_and_follow_the_step_rule(
    snrs: list[float], dr: int, power: int, nb_trans: int, margin: float
) -> None:
    records = history(snrs)
    decision = adr_decision(records, dr, power, nb_trans, margin)
    steps = math.floor((max(snrs[-MAX_HISTORY:]) - required_snr_db(dr) - margin) / 3)
    if decision is None:
        # Nothing changes: no headroom to use, or nowhere left to go.
        assert steps == 0 or (steps > 0 and dr == ADR_MAX_DR and power == MAX_TX_POWER_INDEX) or (
            steps < 0 and power == 0
        )
        return
    assert decision.steps == steps
    assert dr <= decision.dr <= ADR_MAX_DR
    assert 0 <= decision.tx_power_index <= MAX_TX_POWER_INDEX
    assert 1 <= decision.nb_trans <= MAX_NB_TRANS
    if steps > 0:
        assert decision.tx_power_index >= power
        # Power is lowered only once the data rate is at its top.
        assert decision.tx_power_index == power or decision.dr == ADR_MAX_DR
        assert (decision.dr - dr) + (decision.tx_power_index - power) == min(
            steps, ADR_MAX_DR - dr + MAX_TX_POWER_INDEX - power
        )
    elif steps < 0:
        assert decision.dr == dr and decision.tx_power_index == max(0, power + steps)


@settings(max_examples=200)
@given(snr_values, st.integers(0, ADR_MAX_DR), st.integers(0, MAX_TX_POWER_INDEX))
def test_repeated_decisions_on_a_steady_history_settle_without_oscillating(snr: float, dr: int, power: int) -> None:
    records = history([snr] * 5)
    moves = []
    for _ in range(ADR_MAX_DR + MAX_TX_POWER_INDEX + 1):
        decision = adr_decision(records, dr, power, 1, 10)
        if decision is None:
            break
        assert decision.dr >= dr
        moves.append((decision.tx_power_index > power) - (decision.tx_power_index < power))
        dr, power = decision.dr, decision.tx_power_index
    else:
        pytest.fail("ADR did not settle")
    # TX power moves one way only: down (higher index) with headroom, up without.
    assert len(set(m for m in moves if m)) <= 1
