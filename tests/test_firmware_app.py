"""The remote configuration downlink in micropython: cbor.decode_message against the CPython schema codec, settings
applied, refused and kept across reboots (a newer installed config.json wins), and the whole streetlight app on a fake
board: OTAA join, a config downlink that changes its interval, confirmed readings and dim level at once, and the change
still there after a reboot, and the lamp-fault alarm sent at once, confirmed, once per fault episode."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dos_codecs.crypto import SessionKeys, derive_session_keys, seal_join_accept
from dos_codecs.lorawan import DataFrame, JoinAccept, MType, parse_data_frame
from dos_codecs.schema import available_kinds, load_schema
from firmware_support import run_firmware, run_micropython

DEV_EUI, JOIN_EUI = "70b3d57ed0050007", "70b3d57ed0000000"
APP_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
DEV_ADDR = 0x26AA0007
JOIN_NONCE, NET_ID = 7, 0x13
CONFIG = {"board": "emu", "kind": "streetlight", "asset_id": "SL-T-7", "activation": "otaa", "dev_eui": DEV_EUI,
          "join_eui": JOIN_EUI, "app_key": APP_KEY.hex(), "interval_s": 60, "settings": {}, "calibration": {}}


@st.composite
def config_messages(draw):
    """(kind, values) of a config downlink of some kind, each field present or not."""
    kind = draw(st.sampled_from(available_kinds(1)))
    message = load_schema(kind).message("config")
    values = {}
    for field in message.fields:
        if draw(st.booleans()):
            values[field.name] = draw(st.booleans() if field.type == "bool"
                                      else st.integers(int(field.min), int(field.max)))
    return kind, values


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(config_messages(), min_size=1, max_size=10))
def test_decode_message_gives_what_the_schema_codec_encoded(batch):
    payloads = [(kind, load_schema(kind).encode("config", values).hex()) for kind, values in batch]
    code = "import json\nfrom cbor_decode import decode_message\n" + "".join(
        f"print(json.dumps(decode_message({kind!r}, 3, bytes.fromhex({payload!r}))))\n" for kind, payload in payloads)
    out = [json.loads(line) for line in run_micropython(code).splitlines()]
    assert out == [["config", values, []] for _kind, values in batch]


def test_decode_message_errors_and_unknown_keys():
    out = run_micropython("""
from cbor import CborError
from cbor_decode import decode_message
for kind, fport, payload in (('streetlight', 3, 'a2011402f5'), ('streetlight', 3, 'a11712'), ('streetlight', 9, 'a0'),
                             ('streetlight', 3, '81 01'), ('streetlight', 3, 'a10120'), ('streetlight', 3, 'a10201'),
                             ('streetlight', 3, 'a101'), ('lamppost', 3, 'a0')):
    try:
        print(decode_message(kind, fport, bytes.fromhex(payload.replace(' ', ''))))
    except CborError as exc:
        print(exc.reason)
""").splitlines()
    assert out[0] in ("('config', {'interval_s': 20, 'confirmed': True}, [])",
                      "('config', {'confirmed': True, 'interval_s': 20}, [])")
    assert out[1] == "('config', {}, [23])"  # an unknown key is reported, not fatal
    assert out[2:] == ["unknown_fport", "not_a_map", "wrong_type", "wrong_type", "truncated", "unknown_fport"]


DEFAULTS = {"interval_s": 60, "confirmed": False, "dusk_lux": 50, "dim_level": 100, "battery_low_v": 3.4,
            "presence_level": 100, "presence_hold_s": 60, "night_dim_after_min": 300, "night_dim_level": 50,
            "night_dim_for_min": 0}
BANNER_REST = ("battery_low_v=3.4 presence_level=100 presence_hold_s=60 night_dim_after_min=300 night_dim_level=50 "
               "night_dim_for_min=0")

SETTINGS_RUN = """
import json
from apps.streetlight_settings import SETTINGS
from remote_settings import apply
from settings import load
from store import Store
store = Store()
config = json.loads({config!r})
values, dropped = load(config, config.get("settings", {{}}), store, SETTINGS)
print(json.dumps({{"values": values, "dropped": dropped}}))
applied, refused = apply(values, store, SETTINGS, {changes!r})
print(json.dumps({{"applied": applied, "refused": refused}}))
"""


def settings_run(folder, changes: dict, config: dict | None = None) -> list[dict]:
    code = SETTINGS_RUN.format(config=json.dumps(config or CONFIG), changes=changes)
    return [json.loads(line) for line in run_micropython(code, cwd=folder).splitlines()]


def test_settings_are_applied_refused_and_kept_across_reboots(tmp_path):
    boot, result = settings_run(tmp_path, {"interval_s": 20, "dim_level": 40, "dusk_lux": 5000, "confirmed": 1,
                                           "colour": 3})
    assert boot == {"values": DEFAULTS, "dropped": []}
    assert sorted(map(tuple, result["applied"])) == [("dim_level", 100, 40), ("interval_s", 60, 20)]
    assert sorted(map(tuple, result["refused"])) == [("colour", "not a setting of this node"),
                                                     ("confirmed", "1 out of range"), ("dusk_lux", "5000 out of range")]
    boot, result = settings_run(tmp_path, {"interval_s": 20, "confirmed": True})
    assert boot["values"] == {**DEFAULTS, "interval_s": 20, "dim_level": 40}
    assert result == {"applied": [["confirmed", False, True]], "refused": []}  # 20 again is no change
    # a technician installs a config.json with another dim level: the installed value is the newer decision
    installed = {**CONFIG, "settings": {"dim_level": 70}}
    boot, _ = settings_run(tmp_path, {}, installed)
    assert boot == {"values": {**DEFAULTS, "interval_s": 20, "confirmed": True, "dim_level": 70},
                    "dropped": ["dim_level"]}
    saved = json.loads((tmp_path / "state.json").read_text())["settings"]
    assert saved == {"interval_s": [20, 60], "confirmed": [True, False]}


def test_a_config_downlink_is_decoded_applied_and_logged_with_its_modules_unloaded(tmp_path):
    out = run_micropython(f"""
import json, sys
from apps.runtime import apply_config
from apps.streetlight_settings import SETTINGS
from settings import load
from store import Store
store = Store()
config = json.loads({json.dumps(json.dumps(CONFIG))})
values, _dropped = load(config, config["settings"], store, SETTINGS)
for payload, fcnt in (({load_schema("streetlight").encode("config", {"interval_s": 20}).hex()!r}, 4),
                      ('a1011903e8', 5), ('a11712', 6), ('a10120', '?'), ('a101', 7)):
    for line in apply_config('streetlight', values, store, bytes.fromhex(payload), fcnt):
        print(line)
print(values['interval_s'], [name for name in ('cbor_decode', 'remote_settings', 'apps.streetlight_settings')
                              if name in sys.modules])
""", cwd=tmp_path).splitlines()
    assert out == ["config: interval_s 60 -> 20 (downlink fcnt 4)",
                   "config: interval_s 20 -> 1000 (downlink fcnt 5)",
                   "config: unknown key 23 ignored (downlink fcnt 6)",
                   "config downlink fcnt ? refused: wrong_type: interval_s",
                   "config downlink fcnt 7 refused: truncated",
                   "1000 []"]


def test_a_bad_installed_setting_is_a_config_error(tmp_path):
    out = run_micropython(f"""
import json
from apps.streetlight_settings import SETTINGS
from config import ConfigError
from settings import load
from store import Store
for bad in ({{"interval_s": 5}}, {{"settings": {{"confirmed": "yes"}}}}, {{"settings": {{"dim_level": 101}}}}):
    config = json.loads({json.dumps(json.dumps(CONFIG))})
    config.update(bad)
    try:
        load(config, config.get("settings", {{}}), Store(), SETTINGS)
    except ConfigError as exc:
        print(exc)
""", cwd=tmp_path).splitlines()
    assert out == ["config.interval_s must be a number in [10, 86400]", "settings.confirmed must be true or false",
                   "settings.dim_level must be a number in [0, 100]"]


# ---- the whole app: fake board, scripted radio, virtual time

APP_RUN = """
import json, time
from apps.streetlight import App, run
from drivers.lamp import Lamp
from fwtest import ScriptedRadio
from lorawan.node import node_from_config
from store import Store


class FakeI2C:
    '''BH1750 (raw {lux_raw}: 12 is 10 lx, dark, the lamp is on) and INA219 (power register 18000 is 36 W with the
    0.1 ohm shunt): the power register reads {power_registers} in turn, the last one from then on; reads number
    {power_failures} (from 0) fail.'''

    def __init__(self):
        self.power_reads = 0

    def writeto(self, address, data):
        pass

    def readfrom_into(self, address, buf):
        buf[0], buf[1] = {lux_raw} >> 8, {lux_raw} & 0xFF

    def writeto_mem(self, address, register, data):
        pass

    def readfrom_mem_into(self, address, register, buf):
        value = 0
        if register == 3:
            if self.power_reads in {power_failures!r}:
                self.power_reads += 1
                raise OSError(5)  # EIO: the chip did not answer
            powers = {power_registers!r}
            value = powers[min(self.power_reads, len(powers) - 1)]
            self.power_reads += 1
        buf[0], buf[1] = value >> 8, value & 0xFF


class FakePin:
    def __call__(self, value=None):
        pass


class FakePWM:
    def duty_u16(self, value=None):
        print(json.dumps({{"pwm": value, "t_ms": time.ticks_ms()}}))


class FakePIR:
    '''High during the windows {presence_ms!r} ([start, end) in ms).'''

    def sensed(self):
        now = time.ticks_ms()
        return any(start <= now < end for start, end in {presence_ms!r})


class FakeBoard:
    '''Its battery reads {battery_v!r} in turn, the last one from then on.'''
    BATTERY_DIVIDER = 2

    def __init__(self):
        self._i2c = FakeI2C()
        self.battery_reads = 0

    def i2c(self):
        return self._i2c

    def lamp(self):
        return Lamp(FakePin(), FakePWM())

    def presence(self):
        return FakePIR()

    def battery_volts(self, divider):
        volts = {battery_v!r}
        self.battery_reads += 1
        return volts[min(self.battery_reads, len(volts)) - 1]


config = json.loads({config!r})
store = Store()
radio = ScriptedRadio({replies!r}, exit_on_send={exit_on_send})
node = node_from_config(config, lambda: radio, store)
run(App(FakeBoard(), config, store), node)
"""


def app_run(folder, replies: list[str | None], exit_on_send: int, config: dict | None = None, lux_raw: int = 12,
            power_registers: tuple[int, ...] = (18000,), presence_ms: tuple[tuple[int, int], ...] = (),
            battery_v: tuple[float, ...] = (3.75,), power_failures: tuple[int, ...] = ()) -> list[str | dict]:
    """One boot of the streetlight app until the `exit_on_send`-th transmission; output lines (JSON ones as dicts)."""
    code = APP_RUN.format(config=json.dumps(config or CONFIG), replies=replies, exit_on_send=exit_on_send,
                          lux_raw=lux_raw, power_registers=list(power_registers),
                          presence_ms=[list(w) for w in presence_ms], battery_v=list(battery_v),
                          power_failures=list(power_failures))
    return [json.loads(line) if line.startswith("{") else line for line in run_firmware(code, cwd=folder).splitlines()]


def test_config_downlink_changes_the_running_app_and_survives_a_reboot(tmp_path):
    keys = SessionKeys(*derive_session_keys(APP_KEY, JOIN_NONCE, NET_ID, 0))
    accept = seal_join_accept(JoinAccept(join_nonce=JOIN_NONCE, net_id=NET_ID, dev_addr=DEV_ADDR), APP_KEY).hex()
    change = load_schema("streetlight").encode("config", {"interval_s": 20, "confirmed": True, "dim_level": 40})

    def down(fcnt, **fields):
        frame = DataFrame(mtype=MType.UNCONFIRMED_DOWN, dev_addr=DEV_ADDR, fcnt16=fcnt, **fields)
        return keys.seal(frame, fcnt).hex()

    replies = [accept, down(0, fport=3, frm_payload=change)] + [down(n, ack=True) for n in range(1, 4)]
    lines = app_run(tmp_path, replies, exit_on_send=6)  # the JoinRequest, then four readings
    text = [line for line in lines if isinstance(line, str)]
    assert "settings: interval_s=60 confirmed=False dusk_lux=50 dim_level=100 " + BANNER_REST in text
    assert "joined: DevAddr 26aa0007, DevNonce 0, DR5" in text
    for applied in ("interval_s 60 -> 20", "confirmed False -> True", "dim_level 100 -> 40"):
        assert f"config: {applied} (downlink fcnt 0)" in text, text
    transmissions = [line for line in lines if isinstance(line, dict) and "tx" in line]
    uplinks = [parse_data_frame(bytes.fromhex(t["tx"])) for t in transmissions[1:]]
    assert [u.fcnt16 for u in uplinks] == [0, 1, 2, 3]
    assert [u.mtype for u in uplinks] == [MType.UNCONFIRMED_UP] + [MType.CONFIRMED_UP] * 3
    schema = load_schema("streetlight")
    readings = [schema.decode(1, keys.open(u, u.fcnt16)) for u in uplinks]
    assert [r.readings["dim_level"]["value"] for r in readings] == [100, 40, 40, 40]
    # the lamp was dimmed as soon as the downlink arrived, before the next reading
    pwm = [line["pwm"] for line in lines if isinstance(line, dict) and "pwm" in line]
    assert pwm[-1] == 40 * 65535 // 100 and 100 * 65535 // 100 in pwm
    starts = [t["start_ms"] for t in transmissions[1:]]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(gap <= 2 * 20_000 + 3_000 for gap in gaps), gaps  # one reading per 20 s slot now, not per 60 s
    acked = [line for line in text if line.startswith("reading ")]
    assert all(line.endswith(" acked") for line in acked[1:]), acked
    # a reboot keeps the remote settings (and joins with the next DevNonce)
    lines = app_run(tmp_path, [], exit_on_send=1)
    assert "settings: interval_s=20 confirmed=True dusk_lux=50 dim_level=40 " + BANNER_REST in lines
    assert json.loads((tmp_path / "state.json").read_text())["dev_nonce"] == 2

ALARM_FPORT = load_schema("streetlight").message("alarm").fport


def joined_session() -> tuple[SessionKeys, str]:
    """The session keys of the scripted OTAA join and the JoinAccept that starts it."""
    keys = SessionKeys(*derive_session_keys(APP_KEY, JOIN_NONCE, NET_ID, 0))
    accept = seal_join_accept(JoinAccept(join_nonce=JOIN_NONCE, net_id=NET_ID, dev_addr=DEV_ADDR), APP_KEY).hex()
    return keys, accept


def ack(keys: SessionKeys, fcnt: int) -> str:
    return keys.seal(DataFrame(mtype=MType.UNCONFIRMED_DOWN, dev_addr=DEV_ADDR, fcnt16=fcnt, ack=True), fcnt).hex()


def sent_uplinks(lines, keys):
    """(fport, confirmed, decoded) of every data uplink the app transmitted."""
    schema = load_schema("streetlight")
    frames = [bytes.fromhex(line["tx"]) for line in lines if isinstance(line, dict) and "tx" in line]
    uplinks = [parse_data_frame(frame) for frame in frames if frame[0] >> 5 != MType.JOIN_REQUEST]
    return [(f.fport, f.mtype == MType.CONFIRMED_UP, schema.decode(f.fport, keys.open(f, f.fcnt16))) for f in uplinks]


def test_a_dark_lamp_is_alarmed_at_once_confirmed_and_once_per_fault_episode(tmp_path):
    keys, accept = joined_session()
    # readings see 0 W, 0 W, 36 W (healthy again), 0 W: two fault episodes
    replies = [accept, ack(keys, 0), None, None, None, None, None, None, ack(keys, 1)]
    lines = app_run(tmp_path, replies, exit_on_send=8, power_registers=(0, 0, 18000, 0))
    uplinks = sent_uplinks(lines, keys)
    assert [(fport, confirmed) for fport, confirmed, _ in uplinks] == [
        (ALARM_FPORT, True), (1, False), (1, False), (1, False), (ALARM_FPORT, True), (1, False)]
    for _fport, _confirmed, decoded in (uplinks[0], uplinks[4]):
        assert decoded.message == "alarm" and decoded.warnings == []
        assert {name: r["value"] for name, r in decoded.readings.items()} == {
            "lamp_fault": True, "power": 0.0, "expected_power": 36.0, "dim_level": 100}
    powers = [decoded.readings["power"]["value"] for fport, _c, decoded in uplinks if fport == 1]
    assert powers == [0.0, 0.0, 36.0, 0.0], "the routine readings go on through the fault"
    alarms = [line for line in lines if isinstance(line, str) and line.startswith("alarm: ")]
    assert len(alarms) == 2 and all(line.startswith("alarm: lamp fault: power=0.0W expected=36.0W dim=100% -> fcnt ")
                                    and line.endswith(" acked") for line in alarms), alarms


def test_a_switched_off_lamp_drawing_power_is_a_fault(tmp_path):
    keys, accept = joined_session()
    # daylight (1000 lx): the lamp stays off but draws 36 W (a stuck relay), then 4 W (under the limit), then 36 W again
    lines = app_run(tmp_path, [accept, ack(keys, 0), None, None, None, None, ack(keys, 1)], exit_on_send=7,
                    lux_raw=1200, power_registers=(18000, 2000, 18000))
    uplinks = sent_uplinks(lines, keys)
    assert [(fport, confirmed) for fport, confirmed, _ in uplinks] == [
        (ALARM_FPORT, True), (1, False), (1, False), (ALARM_FPORT, True), (1, False)]
    assert {name: r["value"] for name, r in uplinks[0][2].readings.items()} == {
        "lamp_fault": True, "power": 36.0, "expected_power": 0.0, "dim_level": 0}
    assert [u[2].readings["lamp_on"]["value"] for u in uplinks if u[0] == 1] == [False] * 3


def test_a_sends_log_lines_say_how_it_went_and_what_the_join_and_downlinks_brought(tmp_path):
    out = run_micropython("""
from apps.network_events import radio_summary, report
from lorawan.events import Done, Downlink, JoinFailed, Joined, NotSent, RxIgnored, Sent
sent = lambda fcnt, freq_khz, attempt: Sent(fcnt, 1, freq_khz, 5, 1000, attempt)
for events in ([], [NotSent('duty_cycle', 'wait 12 s'), NotSent('other', 'x')], [sent(7, 868100, 1), Done(7, None)],
               [sent(8, 868300, 1), RxIgnored('mic'), sent(8, 0, 2), sent(8, 868500, 3), Done(8, False)],
               [sent(9, 867100, 1), Done(9, True)]):
    print(radio_summary(events))
events = [Joined(0x26AA0042, -1, 1, 5), JoinFailed(2, 4, 0), Downlink(9, b'ab', 3, 1, -80, 7),
          Downlink(3, b'cd', 4, 2, -90, 5), sent(0, 868100, 1)]
print(report(events, 'streetlight', 'reading a'))
print(report([sent(1, 868100, 1), Done(1, True)], 'streetlight', 'reading b'))
""", cwd=tmp_path).splitlines()
    assert out == ["not sent", "not sent: duty_cycle (wait 12 s)", "fcnt 7 868.1 MHz DR5",
                   "fcnt 8 868.5 MHz DR5 after 3 tries not acked", "fcnt 9 867.1 MHz DR5 acked",
                   "joined: DevAddr 26aa0042, DevNonce ?, DR5", "join attempt 2 (DevNonce 4) got no JoinAccept",
                   "reading a -> fcnt 0 868.1 MHz DR5", "downlink on FPort 9 (2 bytes) ignored",
                   "([(b'cd', 4)], False)",  # the config downlink (FPort 3), for apps.runtime.apply_config
                   "reading b -> fcnt 1 868.1 MHz DR5 acked", "([], True)"]
