"""MAC commands, ADR and downlink counters of the sans-IO MAC in micropython: every request built with the CPython codecs
(dos_codecs.mac_commands) and answered in bytes those codecs parse back to the expected answers; LinkADRReq blocks,
channel masks, NbTrans and TX power on the air; the ADR back-off sequence; stale downlink counters; payload limits; and
the runner's duty-cycle wait."""
from __future__ import annotations

import json
import math

from dos_codecs.crypto import SessionKeys
from dos_codecs.lorawan import DataFrame, MType, parse_data_frame
from dos_codecs.mac_commands import (
    DeviceTimeAns,
    DeviceTimeReq,
    DevStatusAns,
    DevStatusReq,
    DutyCycleAns,
    DutyCycleReq,
    LinkADRAns,
    LinkADRReq,
    LinkCheckAns,
    LinkCheckReq,
    NewChannelAns,
    NewChannelReq,
    RXParamSetupAns,
    RXParamSetupReq,
    RXTimingSetupAns,
    RXTimingSetupReq,
    build_mac_commands,
    parse_mac_commands,
)
from firmware_support import run_firmware

DEV_ADDR = 0x26011BDA
NWK = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
APP = bytes.fromhex("f0e0d0c0b0a090807060504030201000")
KEYS = SessionKeys(NWK, APP)
EXTRA_CHANNELS_HZ = [867_100_000, 867_300_000, 867_500_000, 867_700_000, 867_900_000]


def prelude(data_rate=5, adr=False, fcnt_down=0, seed=11) -> str:
    return f"""
import json
from fwshow import describe, show
from lorawan.node_config import activate_abp
from lorawan.mac import Mac
from lorawan.region import EU868
B = bytes.fromhex
mac = Mac(EU868(seed={seed}), data_rate={data_rate}, adr={adr})
activate_abp(mac, {DEV_ADDR}, B('{NWK.hex()}'), B('{APP.hex()}'), fcnt_down={fcnt_down})
clock = [0]


def channel(index):
    # [freq_khz, min_dr, max_dr] of a defined channel, None for one that is not
    r = mac.region
    return [r.channel_freqs[index], r.channel_min_dr[index], r.channel_max_dr[index]] if r.channel_freqs[index] else None


def drive(items, replies):
    frames, tx_ends, events = [], [], []
    while items:
        item = describe(items.pop(0))
        name = item['type']
        if name == 'Transmit':
            frames.append(item)
            clock[0] += item['airtime_us'] // 1000 + 1
            tx_ends.append(clock[0])
            items.extend(mac.tx_done(clock[0]))
        elif name == 'OpenRx':
            clock[0] = item['at_ms'] + item['timeout_ms']
            reply = replies.pop(0) if replies else None
            items.extend(mac.rx(B(reply), clock[0], -80, 4.0) if reply else mac.rx_timeout(clock[0]))
        elif name == 'Wait':
            clock[0] = max(clock[0], item['until_ms'])
            items.extend(mac.wake(clock[0]))
        else:
            events.append(item)
    return frames, tx_ends, events


def up(payload=b'x', confirmed=False, replies=(), gap=60_000):
    '''One uplink `gap` ms after the last exchange, run to its end; RX windows get `replies` in order (hex or None).'''
    clock[0] += gap
    frames, tx_ends, events = drive(mac.uplink(1, payload, clock[0], confirmed), list(replies))
    print(json.dumps({{'frames': frames, 'tx_ends': tx_ends, 'events': events}}))
"""


def run_ups(body: str, **kwargs) -> list[dict]:
    return [json.loads(line) for line in run_firmware(prelude(**kwargs) + body).splitlines()]


def down(fcnt: int, *, fopts=(), commands=(), fport=None, payload=b"", confirmed=False, ack=False) -> str:
    """A downlink sealed by the CPython codecs (hex): MAC commands in FOpts (`fopts`) or as FPort 0 (`commands`)."""
    if commands:
        fport, payload = 0, build_mac_commands(commands)
    frame = DataFrame(mtype=MType.CONFIRMED_DOWN if confirmed else MType.UNCONFIRMED_DOWN, dev_addr=DEV_ADDR,
                      fcnt16=fcnt & 0xFFFF, ack=ack, fopts=build_mac_commands(fopts), fport=fport, frm_payload=payload)
    return KEYS.seal(frame, fcnt).hex()


def frames_of(step: dict) -> list[DataFrame]:
    return [parse_data_frame(bytes.fromhex(f["frame"])) for f in step["frames"]]


def answers(step: dict) -> list:
    """The MAC commands in the FOpts of the step's (first) frame, parsed by the codecs."""
    return parse_mac_commands(frames_of(step)[0].fopts, uplink=True)


def test_requests_are_applied_and_answered_in_bytes_the_codecs_parse():
    requests = [DutyCycleReq(max_duty_cycle=0),
                RXParamSetupReq(rx1_dr_offset=2, rx2_data_rate=3, frequency_hz=869_525_000), DevStatusReq(), NewChannelReq(ch_index=3, frequency_hz=867_100_000, min_dr=0, max_dr=5),
                RXTimingSetupReq(delay=3)]
    steps = run_ups(f"""
mac.battery_level = 180
up(replies=['{down(0, commands=requests)}'])
up()
up()
print(json.dumps([mac.rx1_delay_ms, mac.rx1_dr_offset, mac.rx2_dr, mac.rx2_freq_khz, channel(3)]))
""")
    assert answers(steps[1]) == [DutyCycleAns(), RXParamSetupAns(True, True, True), DevStatusAns(battery=180, margin=4),
                                 NewChannelAns(True, True), RXTimingSetupAns()]
    assert answers(steps[2]) == [RXParamSetupAns(True, True, True), RXTimingSetupAns()]  # sticky: no downlink yet
    assert steps[3] == [3000, 2, 3, 869525, [867100, 0, 5]]


def test_the_new_rx_settings_time_the_next_windows():
    setup = down(0, fopts=[RXParamSetupReq(rx1_dr_offset=2, rx2_data_rate=3, frequency_hz=869_100_000),
                           RXTimingSetupReq(delay=3)])
    out = run_firmware(prelude() + f"""
up(replies=['{setup}'])
show(mac.uplink(1, b'x', 100_000))
show(mac.tx_done(100_050))
show(mac.rx_timeout(103_100))
""").splitlines()
    [rx1] = [item for item in json.loads(out[2]) if item["type"] == "OpenRx"]
    [rx2] = json.loads(out[3])
    assert rx1["at_ms"] == 100_050 + 3000 - 5 and rx1["radio"]["sf"] == 9  # RxDelay 3 s, DR5 - offset 2 = DR3
    assert rx1["radio"]["freq_khz"] == json.loads(out[1])[0]["radio"]["freq_khz"]
    assert rx2["at_ms"] == 100_050 + 4000 - 5
    assert (rx2["radio"]["freq_khz"], rx2["radio"]["sf"]) == (869100, 9)


def test_dev_status_margin_rounds_the_snr_and_battery_follows_the_board():
    out = run_firmware("""
from apps.runtime import battery_level
from lorawan.commands import handle_commands
from lorawan.mac import Mac
from lorawan.region import EU868
class Board:
    BATTERY_DIVIDER = 2
battery = (Board, Board.BATTERY_DIVIDER, 3.3, 4.2)  # an app's: the board, divider, empty_v, full_v
mac = Mac(EU868())
for volts in (None, 3.0, 3.3, 3.6, 4.2, 4.5):
    mac.battery_level = battery_level(battery, volts)
    print([list(a) for a in handle_commands(mac, b'\\x06', -7.5, 0)[1]][0][1])
for snr in (-7.5, -7.6, 0.49, 12.5, 40, -40):
    print(handle_commands(mac, b'\\x06', snr, 0)[1][0][2])
""").split()
    assert [int(v) for v in out[:6]] == [255, 1, 1, 85, 254, 254]  # 3.6 V: 1 + 253 x 0.3 / 0.9
    margins = [parse_mac_commands(bytes([0x06, 1, int(m)]), uplink=True)[0].margin for m in out[6:]]
    assert margins == [-7, -8, 0, 13, 31, -32]


def test_link_adr_block_sets_mask_data_rate_power_and_nb_trans_on_the_air():
    new_channels = [NewChannelReq(ch_index=3 + i, frequency_hz=hz, min_dr=0, max_dr=5)
                    for i, hz in enumerate(EXTRA_CHANNELS_HZ)]
    # One block: every defined channel on, then only 3..7. DR, power and NbTrans come from the last request only (on
    # its own the first, with its DR7, would be refused).
    block = [LinkADRReq(data_rate=7, tx_power=0, ch_mask=0, ch_mask_cntl=6),
             LinkADRReq(data_rate=3, tx_power=5, ch_mask=0x00F8, ch_mask_cntl=0, nb_trans=2)]
    rejected = [
        ([LinkADRReq(data_rate=5, tx_power=1, ch_mask=0x0007, ch_mask_cntl=3)], LinkADRAns(True, True, False)),
        ([LinkADRReq(data_rate=7, tx_power=1, ch_mask=0x0007)], LinkADRAns(True, False, True)),
        ([LinkADRReq(data_rate=5, tx_power=8, ch_mask=0x0007)], LinkADRAns(False, True, True)),
        ([LinkADRReq(data_rate=5, tx_power=1, ch_mask=0x0000)], LinkADRAns(True, False, False)),
        ([LinkADRReq(data_rate=5, tx_power=1, ch_mask=0x0100)], LinkADRAns(True, False, False)),
    ]
    script = f"up(replies=['{down(0, commands=new_channels)}'])\nup(replies=['{down(1, fopts=block)}'])\n"
    script += "for _ in range(40):\n    up()\n"
    for n, (request, _answer) in enumerate(rejected):
        script += f"up(replies=['{down(2 + n, fopts=request)}'])\nup()\n"
    steps = run_ups(script)
    assert answers(steps[1]) == [NewChannelAns(True, True)] * 5
    assert answers(steps[2]) == [LinkADRAns(True, True, True)] * 2  # one answer per request of the block
    used = set()
    for step in steps[2:42]:
        frames = frames_of(step)
        assert len(frames) == 2, "NbTrans 2: every frame goes out twice"
        assert step["frames"][0]["frame"] == step["frames"][1]["frame"], "a repetition is the same bytes"
        for sent in step["frames"]:
            radio = sent["radio"]
            assert (radio["sf"], radio["output_power"]) == (9, 16 - 2 * 5)
            used.add(radio["freq_khz"])
    assert used == {hz // 1000 for hz in EXTRA_CHANNELS_HZ}, "hops over exactly the enabled channels"
    for n, (_request, answer) in enumerate(rejected):
        after = steps[43 + 2 * n]
        assert answers(after)[0] == answer
        assert after["frames"][0]["radio"]["sf"] == 9, "a refused LinkADRReq changes nothing"
        assert after["frames"][0]["radio"]["freq_khz"] in {hz // 1000 for hz in EXTRA_CHANNELS_HZ}


def test_new_channel_req_refuses_default_channels_bad_ranges_and_frequencies():
    requests = [NewChannelReq(ch_index=0, frequency_hz=867_100_000, min_dr=0, max_dr=5),
                NewChannelReq(ch_index=4, frequency_hz=433_175_000, min_dr=0, max_dr=5),
                NewChannelReq(ch_index=5, frequency_hz=867_500_000, min_dr=4, max_dr=2),
                NewChannelReq(ch_index=16, frequency_hz=867_500_000, min_dr=0, max_dr=5),
                NewChannelReq(ch_index=6, frequency_hz=867_700_000, min_dr=2, max_dr=5),
                NewChannelReq(ch_index=7, frequency_hz=869_300_000, min_dr=0, max_dr=5)]  # between two sub-bands
    steps = run_ups(f"""
up(replies=['{down(0, commands=requests)}'])
up(replies=['{down(1, commands=[NewChannelReq(ch_index=6, frequency_hz=0, min_dr=0, max_dr=0)])}'])
up()
print(json.dumps([[channel(i) for i in range(8)]]))
""")
    assert answers(steps[1]) == [NewChannelAns(False, False), NewChannelAns(True, False), NewChannelAns(False, True),
                                 NewChannelAns(False, False), NewChannelAns(True, True), NewChannelAns(True, False)]
    assert answers(steps[2]) == [NewChannelAns(True, True)]  # frequency 0 removes channel 6
    assert steps[3] == [[[868100, 0, 5], [868300, 0, 5], [868500, 0, 5], None, None, None, None, None]]


def test_duty_cycle_req_limits_the_aggregate_airtime():
    steps = run_ups(f"""
up(replies=['{down(0, fopts=[DutyCycleReq(max_duty_cycle=7), NewChannelReq(3, 867_100_000, 0, 5)])}'])
up(payload=bytes(10), gap=0)
up(payload=bytes(10), gap=0)
""")
    assert answers(steps[1]) == [DutyCycleAns(), NewChannelAns(True, True)]
    first, second = steps[1], steps[2]
    airtime_ms = first["frames"][0]["airtime_us"] / 1000
    started = second["tx_ends"][0] - (second["frames"][0]["airtime_us"] // 1000 + 1)
    # 1/128 of the time on air, on any channel: even 867.1 MHz (another sub-band) waits 127 x the last airtime
    assert started >= first["tx_ends"][0] + math.ceil(127 * airtime_ms)


def test_device_time_and_link_check_on_demand():
    answer = down(0, fopts=[LinkCheckAns(margin=20, gw_count=2),
                            DeviceTimeAns(gps_seconds=1_400_000_000, fraction=128)])
    steps = run_ups(f"""
mac.link_check_wanted = True
mac.device_time_wanted = True
up()
up()
mac.device_time_wanted = True
mac.link_check_wanted = True
up(replies=['{answer}'])
""")
    assert answers(steps[0]) == [LinkCheckReq(), DeviceTimeReq()]
    assert frames_of(steps[1])[0].fopts == b"", "a request goes out once, the app asks again if it wants"
    link_check, device_time, done = steps[2]["events"][1:]
    assert link_check == {"type": "LinkCheck", "margin": 20, "gateways": 2}
    assert device_time == {"type": "DeviceTime", "gps_ms": 1_400_000_000_500, "at_ms": steps[2]["tx_ends"][0]}
    assert done["type"] == "Done"


def test_device_time_gives_the_node_a_gps_clock(tmp_path):
    answer = down(0, fopts=[DeviceTimeAns(gps_seconds=1_400_000_000, fraction=64)])
    out = run_firmware(f"""
import json, time
from fwtest import ScriptedRadio
from lorawan.node_config import activate_abp
from lorawan.mac import Mac
from lorawan.node import Node
from lorawan.region import EU868
B = bytes.fromhex
mac = Mac(EU868(seed=3))
activate_abp(mac, {DEV_ADDR}, B('{NWK.hex()}'), B('{APP.hex()}'))
node = Node(ScriptedRadio(['{answer}']), mac)
print(json.dumps([node.gps_time_ms()]))
mac.device_time_wanted = True
node.send(1, b'x')
print(json.dumps([node.gps_time_ms(), node.now_ms()]))
time.sleep_ms(10_000)
print(json.dumps([node.gps_time_ms(), node.now_ms()]))
""", cwd=tmp_path).splitlines()
    lines = [json.loads(line) for line in out if line.startswith("[")]
    tx = [json.loads(line) for line in out if line.startswith("{")]
    assert lines[0] == [None]
    gps, now = lines[1]
    assert gps == 1_400_000_000_250 + (now - tx[0]["end_ms"])
    assert lines[2] == [gps + 10_000, now + 10_000]


def test_adr_back_off_sequence_without_downlinks():
    # ADR from the network first: DR5, 10 dBm, only channel 2, three transmissions per frame
    adr = down(0, fopts=[LinkADRReq(data_rate=5, tx_power=3, ch_mask=0x0004, nb_trans=3)])
    steps = run_ups(f"""
up(replies=['{adr}'])
for _ in range(300):
    up(gap=1000)
up(replies=['{down(1)}'])
up()
print(json.dumps({{'adr_backoff': mac.counters.get('adr_backoff'), 'adr_ack_cnt': mac.adr_ack_cnt}}))
""", adr=True)
    assert answers(steps[1]) == [LinkADRAns(True, True, True)]
    for k, step in enumerate(steps[1:301]):  # k = ADR_ACK_CNT when the frame was built
        frame, radio = frames_of(step)[0], step["frames"][0]["radio"]
        assert frame.adr is True
        assert frame.adr_ack_req is (k >= 64), k
        assert radio["output_power"] == (10 if k < 96 else 14), k  # default TX power first ...
        expected_dr = 5 if k < 128 else max(0, 5 - (k - 96) // 32)  # ... then one DR lower every 32 frames
        assert radio["sf"] == 12 - expected_dr, k
        if k < 288:
            assert len(step["frames"]) == 3 and {f["radio"]["freq_khz"] for f in step["frames"]} == {868500}, k
        else:  # at DR0: default channels on again, NbTrans back to 1
            assert len(step["frames"]) == 1, k
    assert {s["frames"][0]["radio"]["freq_khz"] for s in steps[289:301]} == {868100, 868300, 868500}
    # a downlink ends the back-off: the counter restarts and ADRACKReq goes away
    assert frames_of(steps[301])[0].adr_ack_req is True and frames_of(steps[302])[0].adr_ack_req is False
    assert steps[303] == {"adr_backoff": 7, "adr_ack_cnt": 1}


def test_adr_off_sends_no_adr_bits_and_never_backs_off():
    steps = run_ups("""
for _ in range(100):
    up(gap=1000)
print(json.dumps(mac.counters))
""", adr=False)
    frames = [frames_of(step)[0] for step in steps[:100]]
    assert not any(f.adr or f.adr_ack_req for f in frames)
    assert {s["frames"][0]["radio"]["sf"] for s in steps[:100]} == {7}
    assert steps[100] == {}


def test_stale_or_far_downlink_counters_are_ignored_and_counted():
    steps = run_ups(f"""
up(replies=['{down(5, fport=2, payload=b"a")}'])
up(replies=['{down(5, fport=2, payload=b"a")}'])
up(replies=['{down(3, fport=2, payload=b"b")}'])
up(replies=['{down(6 + 16385, fport=2, payload=b"c")}'])
up(replies=['{down(6, fport=2, payload=b"d")}'])
print(json.dumps([mac.fcnt_down, mac.counters]))
""")
    assert [e["type"] for e in steps[0]["events"]] == ["Sent", "Downlink", "Done"]
    for step, reason in ((steps[1], "fcnt_stale"), (steps[2], "fcnt_stale"), (steps[3], "fcnt_gap")):
        assert {"type": "RxIgnored", "reason": reason} in step["events"]
        assert not any(e["type"] == "Downlink" for e in step["events"])
    [delivered] = [e for e in steps[4]["events"] if e["type"] == "Downlink"]
    assert (delivered["fcnt"], bytes.fromhex(delivered["payload"])) == (6, b"d")
    assert steps[5] == [7, {"fcnt_stale": 2, "fcnt_gap": 1}]


def test_downlink_counter_rolls_over_16_bits():
    steps = run_ups(f"""
up(replies=['{down(65534, fport=2, payload=b"a")}'])
up(replies=['{down(65536 + 1, fport=2, payload=b"b")}'])
print(json.dumps([mac.fcnt_down]))
""", fcnt_down=65530)
    fcnts = [e["fcnt"] for step in steps[:2] for e in step["events"] if e["type"] == "Downlink"]
    assert fcnts == [65534, 65537] and steps[2] == [65538]


def test_oversized_payload_is_not_sent_and_answers_wait_for_room():
    steps = run_ups(f"""
up(payload=bytes(52))
up(payload=bytes(51), replies=['{down(0, fopts=[DevStatusReq()])}'])
up(payload=bytes(50))
up(payload=b'x')
""", data_rate=0)
    assert steps[0] == {"frames": [], "tx_ends": [], "events": [
        {"type": "NotSent", "reason": "payload_too_long", "detail": "52 bytes, DR0 takes 51"}]}
    assert len(steps[1]["frames"]) == 1, "the MAC is idle again after a payload it refused"
    assert frames_of(steps[2])[0].fopts == b"", "a 3-byte answer does not fit next to 50 bytes at DR0"
    assert KEYS.open(frames_of(steps[2])[0], 1) == bytes(50), "the payload is never cut"
    assert answers(steps[3]) == [DevStatusAns(battery=255, margin=4)]


def test_confirmed_retries_repeat_the_frame_and_the_ack_rides_the_next_new_frame():
    confirmed_without_ack = down(0, confirmed=True, fport=2, payload=b"cmd")
    ack = down(1, ack=True)
    steps = run_ups(f"""
up(confirmed=True, replies=['{confirmed_without_ack}', '{ack}'])
up()
up()
""")
    first = steps[0]
    assert len(first["frames"]) == 2 and first["frames"][0]["frame"] == first["frames"][1]["frame"]
    assert frames_of(first)[0].mtype == MType.CONFIRMED_UP and frames_of(first)[0].ack is False
    assert [e["type"] for e in first["events"]] == ["Sent", "Downlink", "Sent", "Done"]
    assert first["events"][-1] == {"type": "Done", "fcnt": 0, "acked": True}
    assert frames_of(steps[1])[0].ack is True and frames_of(steps[1])[0].fcnt16 == 1
    assert frames_of(steps[2])[0].ack is False


def test_the_runner_waits_for_the_sub_band_instead_of_transmitting(tmp_path):
    out = run_firmware(f"""
import json
from fwshow import describe
from fwtest import ScriptedRadio
from lorawan.node_config import activate_abp
from lorawan.mac import Mac
from lorawan.node import Node
from lorawan.region import EU868
B = bytes.fromhex
mac = Mac(EU868(seed=3), data_rate=0)
activate_abp(mac, {DEV_ADDR}, B('{NWK.hex()}'), B('{APP.hex()}'))
node = Node(ScriptedRadio(airtime_ms=1), mac)
for n in range(3):
    print(json.dumps({{"events": [describe(e) for e in node.send(1, bytes(20))]}}))
""", cwd=tmp_path)
    lines = [json.loads(line) for line in out.splitlines()]
    transmissions = [line for line in lines if "tx" in line]
    sent = [e for line in lines if "events" in line for e in line["events"] if e["type"] == "Sent"]
    assert len(transmissions) == 3 and {t["sf"] for t in transmissions} == {12}
    for before, after, event in zip(transmissions, transmissions[1:], sent):
        closed_ms = math.ceil(99 * event["airtime_us"] / 1000)  # 1 % on 868.0-868.6 MHz, the only channels here
        assert after["start_ms"] >= before["end_ms"] + closed_ms


def test_every_hour_of_airtime_stays_within_each_sub_band_duty_cycle():
    """As fast as the MAC allows for three virtual hours at SF12: in every one-hour window that starts with a
    transmission, each sub-band's airtime stays within its share (1 % for both used here)."""
    requests = [NewChannelReq(ch_index=3, frequency_hz=867_100_000, min_dr=0, max_dr=5)]
    steps = run_ups(f"""
up(replies=['{down(0, commands=requests)}'])
while clock[0] < 3 * 3_600_000:
    up(payload=bytes(20), gap=0)
""", data_rate=0)
    starts = []  # (start ms, airtime µs, MHz)
    for step in steps:
        for sent, end in zip(step["frames"], step["tx_ends"]):
            airtime_us = sent["airtime_us"]
            starts.append((end - (airtime_us // 1000 + 1), airtime_us, sent["radio"]["freq_khz"] / 1000))
    bands = {"868.0-868.6": lambda mhz: 868.0 <= mhz < 868.6, "865-868": lambda mhz: 865.0 <= mhz < 868.0}
    for name, in_band in bands.items():
        band = [(start, airtime) for start, airtime, mhz in starts if in_band(mhz)]
        assert len(band) > 40, f"{name}: too few transmissions to prove anything"
        worst = max(sum(a for s, a in band if start <= s < start + 3_600_000) for start, _ in band)
        assert worst <= 36_000_000, f"{name}: {worst / 1e6:.2f} s of airtime in one hour"
        assert worst > 33_000_000, f"{name}: the node used far less than it may ({worst / 1e6:.2f} s)"


def test_an_uplink_that_is_not_sent_takes_no_extra_adr_back_off_step():
    adr = down(0, fopts=[LinkADRReq(data_rate=1, tx_power=3, ch_mask=0x0007)])
    steps = run_ups(f"""
up(replies=['{adr}'])
for _ in range(96):
    up(gap=1000)
up(payload=bytes(52))
up()
""", adr=True)
    assert steps[96]["frames"][0]["radio"]["output_power"] == 10  # ADR_ACK_CNT 95: no step yet
    assert steps[97]["events"][0]["reason"] == "payload_too_long"  # ADR_ACK_CNT 96: the power step, nothing sent
    radio = steps[98]["frames"][0]["radio"]
    assert (radio["output_power"], radio["sf"]) == (14, 11), "one step (power), not a second one (DR)"
