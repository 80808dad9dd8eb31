"""OTAA in micropython: JoinRequests that verify with the CPython codecs, JoinAccepts sealed by the codecs accepted with
the codecs' session keys and settings, join windows at 5 s / 6 s, failed attempts backing off within the join duty cycle,
and a DevNonce that is persisted before it goes on the air: never reused across reboots or a crash."""
from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from dos_codecs.crypto import SessionKeys, derive_session_keys, seal_join_accept, verify_join_request
from dos_codecs.lorawan import DataFrame, JoinAccept, MType, parse_data_frame, parse_join_request
from dos_codecs.mac_commands import build_cf_list
from firmware_support import run_firmware

DEV_EUI = bytes.fromhex("70B3D57ED0050001")
JOIN_EUI = bytes.fromhex("70B3D57ED0000000")
APP_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
CFLIST_HZ = [867_100_000, 867_300_000, 867_500_000, 867_700_000, 867_900_000]
JOIN_REQUEST_SF7_US = 61_696  # 23 bytes at SF7/125 kHz


def prelude(dev_eui=DEV_EUI, join_eui=JOIN_EUI, app_key=APP_KEY, dev_nonce=0, data_rate=5, seed=5) -> str:
    return f"""
import json
from fwshow import show
from lorawan.node_config import set_otaa
from lorawan.mac import Mac, MacError
from lorawan.region import EU868
B = bytes.fromhex

mac = Mac(EU868(seed={seed}), data_rate={data_rate})
set_otaa(mac, B('{dev_eui.hex()}'), B('{join_eui.hex()}'), B('{app_key.hex()}'), {dev_nonce})
"""


def run_steps(body: str, **kwargs) -> list[list[dict]]:
    return [json.loads(line) for line in run_firmware(prelude(**kwargs) + body).splitlines()]


def join_accept(app_key=APP_KEY, join_nonce=1, net_id=0x13, dev_addr=0x26011F00, rx1_dr_offset=0, rx2_data_rate=0,
                rx_delay=1, cf_list: bytes | None = None) -> str:
    accept = JoinAccept(join_nonce=join_nonce, net_id=net_id, dev_addr=dev_addr, rx1_dr_offset=rx1_dr_offset,
                        rx2_data_rate=rx2_data_rate, rx_delay=rx_delay, cf_list=cf_list)
    return seal_join_accept(accept, app_key).hex()


@settings(max_examples=10, deadline=None)
@given(dev_eui=st.binary(min_size=8, max_size=8), join_eui=st.binary(min_size=8, max_size=8),
       app_key=st.binary(min_size=16, max_size=16), dev_nonce=st.integers(0, 0xFFFF), data_rate=st.integers(0, 5))
def test_join_request_verifies_with_the_codecs(dev_eui, join_eui, app_key, dev_nonce, data_rate):
    [[transmit], [nonce]] = run_steps("show(mac.join(0))\nprint(json.dumps([mac.dev_nonce]))", dev_eui=dev_eui,
                                      join_eui=join_eui, app_key=app_key, dev_nonce=dev_nonce, data_rate=data_rate)
    assert transmit["type"] == "Transmit" and transmit["dev_nonce"] == dev_nonce and transmit["fcnt"] is None
    request = parse_join_request(bytes.fromhex(transmit["frame"]))
    assert (request.dev_eui, request.join_eui, request.dev_nonce) == (dev_eui, join_eui, dev_nonce)
    verify_join_request(request, app_key)  # raises unless the MIC is right
    assert transmit["radio"]["freq_khz"] in (868100, 868300, 868500)
    assert transmit["radio"]["sf"] == 12 - data_rate and transmit["radio"]["invert_iq_tx"] is False
    assert nonce == dev_nonce + 1, "the DevNonce is used up as soon as its JoinRequest exists"


@settings(max_examples=8, deadline=None)
@given(app_key=st.binary(min_size=16, max_size=16), join_nonce=st.integers(0, 2**24 - 1),
       net_id=st.integers(0, 2**24 - 1), dev_addr=st.integers(0, 2**32 - 1), dev_nonce=st.integers(0, 0xFFFE),
       rx1_dr_offset=st.integers(0, 5), rx2_data_rate=st.integers(0, 5), rx_delay=st.integers(0, 15),
       with_cf_list=st.booleans(), payload=st.binary(max_size=40))
def test_join_accept_sealed_by_the_codecs_opens_the_same_session(app_key, join_nonce, net_id, dev_addr, dev_nonce,
                                                                   rx1_dr_offset, rx2_data_rate, rx_delay,
                                                                   with_cf_list, payload):
    accept = join_accept(app_key, join_nonce, net_id, dev_addr, rx1_dr_offset, rx2_data_rate, rx_delay,
                         build_cf_list(CFLIST_HZ) if with_cf_list else None)
    steps = run_steps(f"""
show(mac.join(0))
show(mac.tx_done(70))
show(mac.rx(B('{accept}'), 5070))
print(json.dumps([[mac.rx1_dr_offset, mac.rx2_dr, mac.rx1_delay_ms, mac.fcnt_up, mac.fcnt_down, mac.dev_addr,
                   list(mac.region.channel_freqs), mac.region.channel_mask]]))
show(mac.uplink(2, B('{payload.hex()}'), 100_000))
""", app_key=app_key, dev_nonce=dev_nonce)
    [joined] = steps[2]
    assert joined == {"type": "Joined", "dev_addr": dev_addr, "dev_nonce": dev_nonce, "window": 1, "dr": 5}
    offset, rx2_dr, rx1_delay_ms, fcnt_up, fcnt_down, addr, channels, mask = steps[3][0]
    assert (offset, rx2_dr, rx1_delay_ms) == (rx1_dr_offset, rx2_data_rate, 1000 * (rx_delay or 1))
    assert (fcnt_up, fcnt_down, addr) == (0, 0, dev_addr)
    extra = [f // 1000 for f in CFLIST_HZ] if with_cf_list else [0] * 5  # 0: not defined
    assert channels[:8] == [868100, 868300, 868500] + extra
    assert mask == (0xFF if with_cf_list else 0x07)
    frame = parse_data_frame(bytes.fromhex(steps[4][0]["frame"]))
    keys = SessionKeys(*derive_session_keys(app_key, join_nonce, net_id, dev_nonce))
    assert frame.dev_addr == dev_addr and frame.fcnt16 == 0
    assert keys.open(frame, 0) == payload


def test_join_windows_open_5_and_6_seconds_after_the_join_request():
    steps = run_steps("""
show(mac.join(1000))
show(mac.tx_done(1062))
show(mac.rx_timeout(6080))
""")
    [tx], [rx1], [rx2] = steps
    assert rx1["type"] == "OpenRx" and rx1["window"] == 1 and rx1["at_ms"] == 1062 + 5000 - 5
    assert rx1["radio"]["freq_khz"] == tx["radio"]["freq_khz"] and rx1["radio"]["sf"] == 7
    assert rx1["radio"]["invert_iq_rx"] is True
    assert rx2["window"] == 2 and rx2["at_ms"] == 1062 + 6000 - 5
    assert (rx2["radio"]["freq_khz"], rx2["radio"]["sf"]) == (869525, 12)


def test_bad_join_accepts_are_ignored_and_counted_and_rx2_still_joins():
    good = join_accept(dev_addr=0x01020304)
    tampered = good[:-2] + f"{int(good[-2:], 16) ^ 0x40:02x}"
    other_key = join_accept(app_key=bytes(16))
    data_down = SessionKeys(bytes(16), bytes(16)).seal(
        DataFrame(mtype=MType.UNCONFIRMED_DOWN, dev_addr=1, fcnt16=0), 0).hex()
    steps = run_steps(f"""
show(mac.join(0))
show(mac.tx_done(60))
show(mac.rx(B('{tampered}'), 5070))
show(mac.rx(B('{good}'), 6070))
show(mac.join(300_000))
show(mac.tx_done(300_060))
show(mac.rx(B('{other_key}'), 305_070))
show(mac.rx(B('{data_down}'), 306_070))
show(mac.join(900_000))
show(mac.tx_done(900_060))
show(mac.rx(B('{good[:-8]}'), 905_070))
print(json.dumps([mac.counters]))
""")
    assert steps[2][0] == {"type": "RxIgnored", "reason": "mic_mismatch"} and steps[2][1]["window"] == 2
    assert steps[3] == [{"type": "Joined", "dev_addr": 0x01020304, "dev_nonce": 0, "window": 2, "dr": 5}]
    assert steps[6][0] == {"type": "RxIgnored", "reason": "mic_mismatch"}
    assert steps[7][0] == {"type": "RxIgnored", "reason": "bad_join_accept_length"}
    assert steps[7][1]["type"] == "JoinFailed" and steps[7][1]["dev_nonce"] == 1
    assert steps[10][0] == {"type": "RxIgnored", "reason": "bad_join_accept_length"}
    assert steps[11] == [{"mic_mismatch": 2, "bad_join_accept_length": 2}]


def test_a_join_cut_short_by_a_memory_error_leaves_the_node_unjoined_to_join_again():
    """The JoinAccept's settings are applied by lorawan/join_settings.py, loaded for them: if that fails (no heap
    left for its code), the node must not be in a session without the network's settings; it joins again."""
    accept = join_accept(dev_addr=0x01020304, rx_delay=5)
    steps = run_steps(f"""
import sys


class NoMemory:  # stands in for the module: what the import finds in sys.modules
    @staticmethod
    def start_session(mac, accept, window):
        raise MemoryError("memory allocation failed")


sys.modules["lorawan.join_settings"] = NoMemory
show(mac.join(0))
show(mac.tx_done(60))
try:
    mac.rx(B('{accept}'), 5070)
except MemoryError:
    mac.cancel()  # as the runner does when the exchange fails
del sys.modules["lorawan.join_settings"]
print(json.dumps([mac.activated, mac.dev_addr]))
show(mac.join(300_000))
show(mac.tx_done(300_060))
show(mac.rx(B('{accept}'), 305_070))
print(json.dumps([mac.activated, mac.dev_addr, mac.rx1_delay_ms]))
""")
    assert steps[2] == [False, None], "no session without the JoinAccept's settings"
    assert steps[3][0]["type"] == "Transmit" and steps[3][0]["dev_nonce"] == 1
    assert steps[5] == [{"type": "Joined", "dev_addr": 0x01020304, "dev_nonce": 1, "window": 1, "dr": 5}]
    assert steps[6] == [True, 0x01020304, 5000]


def test_failed_join_attempts_back_off_with_fresh_nonces_lower_dr_and_the_join_duty_cycle():
    steps = run_steps("""
from fwshow import describe
t = 0
for attempt in range(7):
    items = mac.join(t)
    start = t
    if describe(items[0])['type'] == 'Wait':
        show(items)
        start = describe(items[0])['until_ms']
        items = mac.wake(start)
    show(items)
    tx_end = start + describe(items[0])['airtime_us'] // 1000 + 1
    mac.tx_done(tx_end)
    mac.rx_timeout(tx_end + 5100)
    failed = mac.rx_timeout(tx_end + 6600)
    show(failed)
    print(json.dumps([{'type': 'tx_end', 'ms': tx_end}]))
    # the first retries are asked for too early (a Wait), the others at their time; the last after an hour of trying
    t = tx_end + 6600 if attempt < 3 else failed[0].retry_at_ms
    if attempt == 5:
        t = max(t, 3_700_000)
""")
    transmits = [s[0] for s in steps if s[0]["type"] == "Transmit"]
    waits = [s[0] for s in steps if s[0]["type"] == "Wait"]
    failures = [s[0] for s in steps if s[0]["type"] == "JoinFailed"]
    tx_ends = [s[0]["ms"] for s in steps if s[0]["type"] == "tx_end"]
    assert [t["dev_nonce"] for t in transmits] == list(range(7))
    assert [12 - t["radio"]["sf"] for t in transmits] == [5, 5, 4, 4, 3, 3, 2]  # one DR lower every second failure
    assert [(f["attempt"], f["dev_nonce"]) for f in failures] == [(n, n - 1) for n in range(1, 8)]
    assert [(w["why"], w["until_ms"]) for w in waits] == [("join_backoff", f["retry_at_ms"]) for f in failures[:3]]
    for n, (transmit, failure, tx_end) in enumerate(zip(transmits, failures, tx_ends), start=1):
        cap = min(3_600_000, 15_000 * 2 ** (n - 1))  # the random delay lies in [cap / 2, cap]
        divisor = 1000 if tx_end > 3_600_000 else 100  # 1 % join duty cycle, 0.1 % after an hour of trying
        duty_ms = math.ceil(transmit["airtime_us"] * (divisor - 1) / 1000)
        delay = failure["retry_at_ms"] - tx_end
        assert max(cap // 2, duty_ms) <= delay <= max(cap, duty_ms), (n, delay, cap, duty_ms)
    assert tx_ends[-1] > 3_600_000
    assert failures[-1]["retry_at_ms"] - tx_ends[-1] >= 999 * transmits[-1]["airtime_us"] / 1000


def test_join_request_waits_for_a_free_sub_band():
    steps = run_steps(f"""
mac.region.note_transmission(868100, 0, {JOIN_REQUEST_SF7_US})  # closes 868.0-868.6 MHz: all three join channels
show(mac.join(10))
show(mac.wake(mac.region.band_free_at[2]))
""")
    [wait], [transmit] = steps
    assert wait == {"type": "Wait", "until_ms": math.ceil(99 * JOIN_REQUEST_SF7_US / 1000), "why": "duty_cycle"}
    assert transmit["type"] == "Transmit" and transmit["dev_nonce"] == 0
    assert transmit["airtime_us"] == JOIN_REQUEST_SF7_US


# ---- the runner and the store: DevNonce across reboots and a crash

OTAA_CONFIG = {"board": "emu", "kind": "streetlight", "asset_id": "SL-T-1", "activation": "otaa",
               "dev_eui": DEV_EUI.hex(), "join_eui": JOIN_EUI.hex(), "app_key": APP_KEY.hex(), "interval_s": 60}


def boot_and_send(folder, replies: list[str | None], sends: int = 1, exit_on_send: int | None = None) -> list[dict]:
    """One power-up of an OTAA node in `folder`: node_from_config + `sends` uplinks through a scripted radio. Returns
    the printed lines (radio transmissions and the events of each send) as dicts."""
    out = run_firmware(f"""
import json
from fwshow import describe
from fwtest import ScriptedRadio
from lorawan.node import node_from_config
from store import Store
radio = ScriptedRadio({replies!r}, exit_on_send={exit_on_send!r})
node = node_from_config(json.loads({json.dumps(json.dumps(OTAA_CONFIG))}), lambda: radio, Store())
for n in range({sends}):
    print(json.dumps({{"events": [describe(e) for e in node.send(1, b'reading')]}}))
""", cwd=folder)
    return [json.loads(line) for line in out.splitlines()]


def state(folder) -> dict:
    return json.loads((folder / "state.json").read_text())


def join_nonces(lines: list[dict]) -> list[int]:
    return [parse_join_request(bytes.fromhex(line["tx"])).dev_nonce for line in lines
            if "tx" in line and bytes.fromhex(line["tx"])[0] == 0x00]


def test_dev_nonce_persists_across_reboots_and_a_crash_never_reuses_one(tmp_path):
    # boot 1: nothing answers; a second send during the back-off does not transmit
    first = boot_and_send(tmp_path, [None, None], sends=2)
    assert join_nonces(first) == [0]
    events = [line["events"] for line in first if "events" in line]
    assert [e["type"] for e in events[0]] == ["JoinFailed", "NotSent"]
    assert events[1] == [{"type": "NotSent", "reason": "not_joined", "detail": events[1][0]["detail"]}]
    assert events[1][0]["detail"].startswith("next join attempt in ")
    assert state(tmp_path)["dev_nonce"] == 1
    # boot 2: joins with the next DevNonce, then sends its reading in the new session
    second = boot_and_send(tmp_path, [join_accept(dev_addr=0x26AA0001)])
    assert join_nonces(second) == [1]
    [events] = [line["events"] for line in second if "events" in line]
    assert [e["type"] for e in events[:2]] == ["Joined", "Sent"] and events[1]["fcnt"] == 0
    keys = SessionKeys(*derive_session_keys(APP_KEY, 1, 0x13, 1))
    uplink = parse_data_frame(bytes.fromhex([line["tx"] for line in second if "tx" in line][-1]))
    assert uplink.dev_addr == 0x26AA0001 and keys.open(uplink, 0) == b"reading"
    saved = state(tmp_path)
    assert saved["dev_nonce"] == 2 and saved["fcnt_down"] == 0 and saved["fcnt_up_limit"] > 0
    # boot 3: power is lost after DevNonce 2 was persisted but before the radio sent it
    crashed = boot_and_send(tmp_path, [], exit_on_send=1)
    assert join_nonces(crashed) == [] and state(tmp_path)["dev_nonce"] == 3
    # boot 4: DevNonce 2 is skipped, never reused
    fourth = boot_and_send(tmp_path, [join_accept(dev_addr=0x26AA0002)])
    assert join_nonces(fourth) == [3]
    all_nonces = join_nonces(first + second + crashed + fourth)
    assert all_nonces == sorted(set(all_nonces)) == [0, 1, 3]


def test_a_damaged_dev_nonce_stops_the_node_instead_of_reusing_one(tmp_path):
    (tmp_path / "state.json").write_text('{"dev_nonce": "seven"}')
    out = run_firmware(f"""
import json
from config import ConfigError
from lorawan.node import node_from_config
from store import Store
try:
    node_from_config(json.loads({json.dumps(json.dumps(OTAA_CONFIG))}), lambda: None, Store())
except ConfigError as exc:
    print(exc)
""", cwd=tmp_path)
    assert out.strip() == "state.json holds a damaged dev_nonce; a DevNonce must never be reused"


def test_join_request_codec_round_trip_of_the_published_vector():
    """The published JoinRequest vector, rebuilt by the firmware from its fields."""
    vector = bytes.fromhex("0039363463336913AA05693574323831330489C65B1304")
    request = parse_join_request(vector)
    app_key = bytes.fromhex("98929b92c49edba9676d646d3b612456")
    [[transmit]] = run_steps("show(mac.join(0))", dev_eui=request.dev_eui, join_eui=request.join_eui,
                             app_key=app_key, dev_nonce=request.dev_nonce)
    assert bytes.fromhex(transmit["frame"]) == vector


def test_an_otaa_session_that_hears_nothing_for_long_joins_again(tmp_path):
    """ADR on, no downlink for SESSION_STALE_AFTER (320) frames: the network may have lost the session, so the next
    send joins again (next DevNonce) and the reading goes out in the new session."""
    replies = [join_accept(dev_addr=0x26AA0001)] + [None] * 640 + [join_accept(join_nonce=2, dev_addr=0x26AA0002)]
    lines = boot_and_send(tmp_path, replies, sends=321)
    sends = [line["events"] for line in lines if "events" in line]
    joined = [(n, e["dev_nonce"], e["dev_addr"]) for n, events in enumerate(sends) for e in events
              if e["type"] == "Joined"]
    assert joined == [(0, 0, 0x26AA0001), (320, 1, 0x26AA0002)]
    assert [e["fcnt"] for e in sends[320] if e["type"] == "Sent"] == [0]
    assert [e["fcnt"] for e in sends[319] if e["type"] == "Sent"] == [319]
    last = parse_data_frame(bytes.fromhex([line["tx"] for line in lines if "tx" in line][-1]))
    keys = SessionKeys(*derive_session_keys(APP_KEY, 2, 0x13, 1))
    assert last.dev_addr == 0x26AA0002 and keys.open(last, 0) == b"reading"
