"""The agent's MAC layer: answers to the node's requests, the node's answers applied only when acknowledged, ADR and
ADRACKReq, DevStatus cadence, resends and give-up, FOpts budget, repetitions and counter resets, and the JSON form."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dos_agent.adr import UplinkRecord
from dos_agent.mac import (
    DEFAULT_CHANNELS_HZ,
    Channel,
    DevStatus,
    LinkCheck,
    MacLayer,
    MacState,
    PendingRequest,
    UplinkInfo,
    gps_time,
    link_margin_db,
    split_fopts,
)
from dos_codecs.lorawan import MAX_FOPTS_LEN
from dos_codecs.mac_commands import (
    DevStatusAns,
    DevStatusReq,
    DeviceTimeAns,
    DeviceTimeReq,
    DutyCycleAns,
    DutyCycleReq,
    LinkADRAns,
    LinkADRReq,
    LinkCheckAns,
    LinkCheckReq,
    MacCommand,
    NewChannelAns,
    NewChannelReq,
    RXParamSetupAns,
    RXParamSetupReq,
    RXTimingSetupAns,
    RXTimingSetupReq,
    build_mac_commands,
    parse_mac_commands,
)

T0 = 1_700_000_000.0
CFLIST = (867_100_000, 867_300_000, 867_500_000, 867_700_000, 867_900_000)
ACK_ALL = LinkADRAns(True, True, True)


def uplink(fcnt: int, dr: int = 0, snr: float | None = 5.0, gateways: int = 1, adr: bool = True,
           adr_ack_req: bool = False) -> UplinkInfo:
    return UplinkInfo(fcnt=fcnt, dr=dr, best_snr=snr, gateway_count=gateways, adr=adr, adr_ack_req=adr_ack_req,
                      time_unix=T0 + fcnt * 60)


def exchange(layer: MacLayer, state: MacState, commands: list[MacCommand], info: UplinkInfo):  # noqa: ANN201
    """One uplink through the layer, and its downlink sent: (result, requests, state after sending)."""
    result = layer.on_uplink(state, commands, info)
    requests = layer.plan_downlink(result.state, info)
    sent = layer.on_downlink_sent(result.state, result.answers + requests, info.time_unix)
    return result, requests, sent


# --- answers to the node's requests -----------------------------------------------------------------------------------


def test_link_check_answer_carries_margin_and_gateway_count() -> None:
    layer = MacLayer()
    # DR3 (SF9) needs -12.5 dB: a best SNR of -2.3 dB is 10.2 dB above it -> margin 10.
    result = layer.on_uplink(MacState(), [LinkCheckReq()], uplink(1, dr=3, snr=-2.3, gateways=2))
    assert result.answers == [LinkCheckAns(margin=10, gw_count=2)]
    assert result.state.link_check == LinkCheck(10, 2, T0 + 60)
    answered = {"type": "mac", "command": "LinkCheckReq", "status": "answered", "margin": 10, "gw_count": 2}
    assert answered in result.events
    assert link_margin_db(-30.0, 0) == 0 and link_margin_db(300.0, 0) == 254 and link_margin_db(None, 0) == 0


def test_device_time_answer_is_gps_time() -> None:
    when = datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=timezone.utc)
    gps_epoch = datetime(1980, 1, 6, tzinfo=timezone.utc)
    expected_seconds = int((when - gps_epoch).total_seconds()) + 18  # 18 leap seconds since 2017
    assert gps_time(when.timestamp()) == (expected_seconds, 128)
    info = replace(uplink(1), time_unix=when.timestamp())
    result = MacLayer().on_uplink(MacState(), [DeviceTimeReq()], info)
    assert result.answers == [DeviceTimeAns(expected_seconds, 128)]


# --- ADR --------------------------------------------------------------------------------------------------------------


def test_strong_node_at_sf12_is_sent_to_sf7_with_its_first_downlink_and_it_takes_effect_on_ack() -> None:
    layer = MacLayer(adr_margin_db=10)
    state = MacState.after_join(CFLIST)
    _result, requests, state = exchange(layer, state, [], uplink(0, dr=0, snr=12.0))
    assert requests == [LinkADRReq(data_rate=5, tx_power=2, ch_mask=0xFF, ch_mask_cntl=0, nb_trans=1), DevStatusReq()]
    # Nothing changes before the node says so.
    assert (state.tx_power_index, state.dr) == (0, 0)
    result, requests, state = exchange(layer, state, [ACK_ALL, DevStatusAns(200, 7)], uplink(1, dr=5, snr=12.0))
    assert (state.dr, state.tx_power_index, state.nb_trans) == (5, 2, 1)
    applied = [e for e in result.events if e.get("command") == "LinkADRReq"]
    assert applied and applied[0]["status"] == "applied" and applied[0]["request"]["data_rate"] == 5
    # With the same SNR at DR5 there is headroom for three more power steps, and none in data rate.
    assert [r for r in requests if isinstance(r, LinkADRReq)] == [LinkADRReq(5, 5, 0xFF, 0, 1)]


def test_a_nack_changes_nothing_and_is_an_event() -> None:
    layer = MacLayer()
    _r, _req, state = exchange(layer, MacState(), [], uplink(0, dr=0, snr=12.0))
    result = layer.on_uplink(state, [LinkADRAns(power_ack=True, data_rate_ack=False, channel_mask_ack=True)],
                             uplink(1, dr=0, snr=12.0))
    assert (result.state.dr, result.state.tx_power_index) == (0, 0)
    assert not any(isinstance(p.command, LinkADRReq) for p in result.state.pending)
    rejected = [e for e in result.events if e.get("status") == "rejected"]
    assert rejected == [{
        "type": "mac", "command": "LinkADRReq", "status": "rejected",
        "request": LinkADRReq(5, 2, 0b111).to_dict(),
        "answer": {"command": "LinkADRAns", "power_ack": True, "data_rate_ack": False, "channel_mask_ack": True},
    }]


def test_adr_ack_req_is_always_answered_with_a_downlink() -> None:
    layer = MacLayer(adr_margin_db=10)
    # A weak node at DR0 with full power: ADR would change nothing, but the node asks for a sign of life.
    state = replace(MacState(), tx_power_index=0)
    result = layer.on_uplink(state, [], uplink(70, dr=0, snr=-15.0, adr_ack_req=True))
    assert result.downlink_required
    requests = layer.plan_downlink(result.state, uplink(70, dr=0, snr=-15.0, adr_ack_req=True))
    assert LinkADRReq(0, 0, 0b111, 0, 1) in requests
    # Without ADRACKReq nothing about ADR goes out.
    quiet = layer.on_uplink(state, [], uplink(70, dr=0, snr=-15.0))
    assert not quiet.downlink_required
    assert not any(isinstance(r, LinkADRReq) for r in layer.plan_downlink(quiet.state, uplink(70, dr=0, snr=-15.0)))


def test_no_adr_request_when_the_node_has_adr_off() -> None:
    layer = MacLayer()
    result = layer.on_uplink(MacState(), [], uplink(0, dr=0, snr=12.0, adr=False))
    assert layer.plan_downlink(result.state, uplink(0, dr=0, snr=12.0, adr=False)) == [DevStatusReq()]


def test_adr_reaches_sf7_within_two_uplinks_with_a_node_that_follows() -> None:
    """A node that applies every acknowledged LinkADRReq, heard at +12 dB: SF12 to SF7 with the first downlink."""
    layer = MacLayer(adr_margin_db=10)
    state = MacState.after_join(CFLIST)
    node_dr, node_power, answers = 0, 0, []
    drs = []
    for fcnt in range(6):
        info = uplink(fcnt, dr=node_dr, snr=12.0)
        drs.append(node_dr)
        result, requests, state = exchange(layer, state, answers, info)
        answers = []
        for command in parse_mac_commands(build_mac_commands(result.answers + requests), uplink=False):
            if isinstance(command, LinkADRReq):
                node_dr, node_power = command.data_rate, command.tx_power
                answers.append(ACK_ALL)
            elif isinstance(command, DevStatusReq):
                answers.append(DevStatusAns(254, 10))
    assert drs[0] == 0 and drs[1] == 5 and set(drs[1:]) == {5}
    assert state.dr == 5 and state.tx_power_index == node_power == 7


# --- resends, cadence -------------------------------------------------------------------------------------------------


def test_unanswered_requests_are_resent_then_dropped() -> None:
    layer = MacLayer(resend_after_uplinks=2, max_attempts=2, dev_status_every=100)
    state = replace(MacState(), dev_status_due=10**6)
    state = layer.enqueue(state, RXTimingSetupReq(delay=3))
    _r, requests, state = exchange(layer, state, [], uplink(0, adr=False))
    assert requests == [RXTimingSetupReq(3)] and state.queued == ()
    assert [p.attempts for p in state.pending] == [1]
    # One uplink without the answer: still waiting, nothing resent.
    _r, requests, state = exchange(layer, state, [], uplink(1, adr=False))
    assert requests == []
    # Two: resent.
    _r, requests, state = exchange(layer, state, [], uplink(2, adr=False))
    assert requests == [RXTimingSetupReq(3)] and [p.attempts for p in state.pending] == [2]
    _r, requests, state = exchange(layer, state, [], uplink(3, adr=False))
    assert requests == []
    result, requests, state = exchange(layer, state, [], uplink(4, adr=False))
    assert requests == [] and state.pending == ()
    assert result.events == [{"type": "mac", "command": "RXTimingSetupReq", "status": "no_answer",
                              "request": {"command": "RXTimingSetupReq", "delay": 3}, "attempts": 2}]
    assert state.rx_delay_s == 1


def test_a_pending_link_adr_request_blocks_new_decisions_until_due() -> None:
    layer = MacLayer(resend_after_uplinks=2)
    _r, first, state = exchange(layer, MacState(), [], uplink(0, dr=0, snr=12.0))
    assert any(isinstance(c, LinkADRReq) for c in first)
    _r, requests, state = exchange(layer, state, [], uplink(1, dr=0, snr=12.0))
    assert not any(isinstance(c, LinkADRReq) for c in requests)
    _r, requests, state = exchange(layer, state, [], uplink(2, dr=0, snr=12.0))
    assert [c for c in requests if isinstance(c, LinkADRReq)] == [c for c in first if isinstance(c, LinkADRReq)]
    assert [p.attempts for p in state.pending if isinstance(p.command, LinkADRReq)] == [2]


def test_dev_status_first_then_every_n_uplinks() -> None:
    layer = MacLayer(dev_status_every=5)
    state = MacState()
    asked = []
    answers: list[MacCommand] = []
    for fcnt in range(12):
        result, requests, state = exchange(layer, state, answers, uplink(fcnt, adr=False))
        answers = [DevStatusAns(100, 3)] if DevStatusReq() in requests else []
        if DevStatusReq() in requests:
            asked.append(fcnt)
    # Asked at once, answered with uplink 1, asked again 5 uplinks later, answered with uplink 7 (next due at 12).
    assert asked == [0, 6]
    assert state.dev_status is not None and state.dev_status.battery == 100


def test_dev_status_answer_is_an_event_with_battery_and_margin() -> None:
    layer = MacLayer()
    _r, _q, state = exchange(layer, MacState(), [], uplink(0, adr=False))
    result = layer.on_uplink(state, [DevStatusAns(battery=127, margin=-4)], uplink(1, adr=False))
    assert result.events == [{"type": "dev_status", "battery": 127, "external_power": False,
                              "battery_level_pct": 49.8, "margin": -4}]
    assert result.state.dev_status == DevStatus(127, -4, T0 + 60)
    assert not any(isinstance(p.command, DevStatusReq) for p in result.state.pending)
    external = layer.on_uplink(state, [DevStatusAns(battery=0, margin=5)], uplink(1, adr=False))
    assert external.events[0]["external_power"] is True and external.events[0]["battery_level_pct"] is None


# --- configuration requests -------------------------------------------------------------------------------------------


def test_rx_param_setup_applies_on_ack_and_its_repeats_ask_for_a_downlink_quietly() -> None:
    layer = MacLayer()
    state = layer.enqueue(replace(MacState(), dev_status_due=10**6), RXParamSetupReq(2, 3, 869_525_000))
    _r, requests, state = exchange(layer, state, [], uplink(0, adr=False))
    assert requests == [RXParamSetupReq(2, 3, 869_525_000)]
    result, _q, state = exchange(layer, state, [RXParamSetupAns(True, True, True)], uplink(1, adr=False))
    assert (state.rx1_dr_offset, state.rx2_dr, state.rx2_frequency_hz) == (2, 3, 869_525_000)
    assert result.downlink_required and [e["status"] for e in result.events] == ["applied"]
    # The node repeats the answer until it hears a downlink: no new event, but a downlink is required.
    repeat = layer.on_uplink(state, [RXParamSetupAns(True, True, True)], uplink(2, adr=False))
    assert repeat.downlink_required and repeat.events == []


def test_rx_param_setup_nack_leaves_the_state() -> None:
    layer = MacLayer()
    state = layer.enqueue(MacState(), RXParamSetupReq(1, 3, 869_000_000))
    _r, _q, state = exchange(layer, state, [], uplink(0, adr=False))
    result = layer.on_uplink(state, [RXParamSetupAns(True, True, False)], uplink(1, adr=False))
    assert result.state.rx2_frequency_hz == 869_525_000 and result.state.rx2_dr == 0
    assert [e["status"] for e in result.events] == ["rejected"]


def test_new_channel_timing_and_duty_cycle_apply_on_ack() -> None:
    layer = MacLayer()
    state = replace(MacState(), dev_status_due=10**6)
    for command in (NewChannelReq(3, 867_100_000, 0, 5), NewChannelReq(4, 867_300_000, 0, 5), RXTimingSetupReq(0),
                    DutyCycleReq(4)):
        state = layer.enqueue(state, command)
    _r, requests, state = exchange(layer, state, [], uplink(0, adr=False))
    assert [type(c) for c in requests] == [RXTimingSetupReq, NewChannelReq, NewChannelReq, DutyCycleReq]
    answers = [RXTimingSetupAns(), NewChannelAns(True, True), NewChannelAns(True, False), DutyCycleAns()]
    result, _q, state = exchange(layer, state, answers, uplink(1, adr=False))
    assert state.rx_delay_s == 1  # Del 0 means 1 s
    assert state.max_duty_cycle == 4
    assert [c.index for c in state.channels] == [0, 1, 2, 3]
    assert state.ch_mask == 0b1111
    assert state.enabled_frequencies_hz() == [*DEFAULT_CHANNELS_HZ, 867_100_000]
    assert sorted(e["status"] for e in result.events) == ["applied", "applied", "applied", "rejected"]
    # Frequency 0 removes a channel.
    state = layer.enqueue(state, NewChannelReq(3, 0, 0, 0))
    _r, _q, state = exchange(layer, state, [], uplink(2, adr=False))
    _r, _q, state = exchange(layer, state, [NewChannelAns(True, True)], uplink(3, adr=False))
    assert [c.index for c in state.channels] == [0, 1, 2] and state.ch_mask == 0b111


def test_unsolicited_answers_are_events_and_change_nothing() -> None:
    result = MacLayer().on_uplink(MacState(), [LinkADRAns(True, True, True), DutyCycleAns()], uplink(0))
    assert [(e["command"], e["status"]) for e in result.events] == [
        ("LinkADRReq", "unsolicited"), ("DutyCycleReq", "unsolicited"),
    ]
    assert result.state.tx_power_index == 0 and result.state.max_duty_cycle == 0


def test_enqueue_rejects_answers_and_bad_fields() -> None:
    layer = MacLayer()
    with pytest.raises(TypeError):
        layer.enqueue(MacState(), LinkCheckAns(1, 1))
    with pytest.raises(ValueError):
        layer.enqueue(MacState(), RXTimingSetupReq(16))
    # A newer request of the same slot replaces the queued one.
    state = layer.enqueue(layer.enqueue(MacState(), DutyCycleReq(1)), DutyCycleReq(2))
    assert state.queued == (DutyCycleReq(2),)


# --- repetitions and resets -------------------------------------------------------------------------------------------


def test_a_repeated_fcnt_does_not_apply_answers_twice_but_keeps_the_best_snr() -> None:
    layer = MacLayer()
    _r, _q, state = exchange(layer, MacState(), [], uplink(0, dr=0, snr=12.0))
    once = layer.on_uplink(state, [ACK_ALL, LinkCheckReq()], uplink(1, dr=5, snr=1.0))
    again = layer.on_uplink(once.state, [ACK_ALL, LinkCheckReq()], uplink(1, dr=5, snr=3.0, gateways=2))
    assert again.answers == [LinkCheckAns(link_margin_db(3.0, 5), 2)]  # the node's request is answered again
    assert not any(e.get("status") in ("applied", "unsolicited") for e in again.events)
    assert again.state.uplink_count == once.state.uplink_count == 2
    assert again.state.history[-1] == UplinkRecord(1, 3.0, 2, 1)


def test_a_counter_that_went_back_starts_the_mac_state_over() -> None:
    layer = MacLayer()
    state = replace(MacState(), tx_power_index=4, last_fcnt=500, uplink_count=40,
                    dev_status=DevStatus(50, 2, T0), history=(UplinkRecord(500, 1.0, 1),))
    result = layer.on_uplink(state, [], uplink(3))
    assert result.state.tx_power_index == 0 and result.state.uplink_count == 1 and result.state.last_fcnt == 3
    assert [r.fcnt for r in result.state.history] == [3]
    assert result.state.dev_status == DevStatus(50, 2, T0)


# --- FOpts budget -----------------------------------------------------------------------------------------------------


def test_split_fopts_keeps_priority_and_the_15_byte_limit() -> None:
    commands = [LinkCheckAns(5, 1), DeviceTimeAns(1, 2), LinkADRReq(5, 0, 7), NewChannelReq(3, 867_100_000, 0, 5),
                DevStatusReq()]
    in_fopts, rest = split_fopts(commands)
    # 3 + 6 + 5 = 14 bytes; the 6-byte NewChannelReq waits, the 1-byte DevStatusReq still fits.
    assert in_fopts == [LinkCheckAns(5, 1), DeviceTimeAns(1, 2), LinkADRReq(5, 0, 7), DevStatusReq()]
    assert rest == [NewChannelReq(3, 867_100_000, 0, 5)]
    assert len(build_mac_commands(in_fopts)) == 15


# --- state ------------------------------------------------------------------------------------------------------------


def test_after_join_enables_the_cflist_channels() -> None:
    state = MacState.after_join(CFLIST, rx1_dr_offset=1, rx2_dr=3, rx_delay_s=0)
    assert state.enabled_frequencies_hz() == [*DEFAULT_CHANNELS_HZ, *CFLIST]
    assert state.ch_mask == 0xFF and (state.rx1_dr_offset, state.rx2_dr, state.rx_delay_s) == (1, 3, 1)
    partial = MacState.after_join((867_100_000, 0, 867_500_000, 0, 0))
    assert [c.index for c in partial.channels] == [0, 1, 2, 3, 5] and partial.ch_mask == 0b101111
    assert MacState().enabled_frequencies_hz() == list(DEFAULT_CHANNELS_HZ)


def test_state_json_round_trip_and_tolerance() -> None:
    state = MacState(
        dr=5, tx_power_index=3, nb_trans=2, ch_mask=0b1011, rx1_dr_offset=1, rx2_dr=3, rx2_frequency_hz=869_000_000,
        rx_delay_s=2, max_duty_cycle=1, adr=True, adr_ack_req=True,
        channels=(Channel(0, 868_100_000), Channel(1, 868_300_000), Channel(3, 867_100_000, 1, 4)),
        history=(UplinkRecord(7, -3.25, 2, 2), UplinkRecord(9, 4.0, 1, 2)), uplink_count=9, last_fcnt=9,
        pending=(PendingRequest(LinkADRReq(5, 3, 0b1011, 0, 2), 8, T0, 2),),
        queued=(NewChannelReq(4, 867_300_000, 0, 5),), dev_status=DevStatus(12, -7, T0), dev_status_due=108,
        link_check=LinkCheck(3, 2, T0),
    )
    text = json.dumps(state.to_dict())
    assert MacState.from_dict(json.loads(text)) == state
    data = json.loads(text)
    data["from_a_newer_version"] = {"x": 1}
    del data["max_duty_cycle"]
    assert MacState.from_dict(data) == replace(state, max_duty_cycle=0)
    assert MacState.from_dict({}) == MacState()
    for broken in ({"dr": "5"}, {"pending": [{"command": "ff", "sent_uplink": 1}]}, {"history": [{"snr": 1.0}]},
                   {"queued": ["0803", "02"]}):
        with pytest.raises(ValueError):
            MacState.from_dict(broken)
    with pytest.raises(ValueError):
        MacState.from_dict([])  # type: ignore[arg-type]


uplink_commands = st.lists(
    st.sampled_from([
        LinkCheckReq(), DeviceTimeReq(), ACK_ALL, LinkADRAns(False, True, True), DevStatusAns(99, -2),
        RXParamSetupAns(True, True, True), RXTimingSetupAns(), NewChannelAns(True, True), DutyCycleAns(),
    ]),
    max_size=4,
)
steps = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 5), st.floats(-25, 15), st.booleans(), st.booleans(), uplink_commands,
              st.sampled_from([None, RXParamSetupReq(1, 2, 869_100_000), NewChannelReq(5, 867_500_000, 0, 5),
                               DutyCycleReq(2)])),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_any_sequence_keeps_the_state_valid_serialisable_and_the_fopts_budget(walk) -> None:  # noqa: ANN001
    layer = MacLayer(dev_status_every=4)
    state = MacState.after_join(CFLIST)
    fcnt = 0
    for gap, dr, snr, adr, ack_req, commands, queued in walk:
        fcnt += gap
        if queued is not None:
            state = layer.enqueue(state, queued)
        info = uplink(fcnt, dr=dr, snr=snr, adr=adr, adr_ack_req=ack_req)
        result = layer.on_uplink(state, commands, info)
        requests = layer.plan_downlink(result.state, info)
        in_fopts, rest = split_fopts(result.answers + requests)
        assert len(build_mac_commands(in_fopts)) <= MAX_FOPTS_LEN
        assert sorted(map(repr, in_fopts + rest)) == sorted(map(repr, result.answers + requests))
        if ack_req and adr:
            assert any(isinstance(c, LinkADRReq) for c in requests)
        state = layer.on_downlink_sent(result.state, in_fopts, info.time_unix)
        assert 0 <= state.tx_power_index <= 7 and 1 <= state.nb_trans <= 3 and len(state.history) <= 20
        # One pending request per slot at most.
        slots = [(type(p.command), getattr(p.command, "ch_index", None)) for p in state.pending]
        assert len(slots) == len(set(slots))
        assert MacState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
