"""The RAK3172 driver (firmware/drivers/rak3172.py) in the real micropython: the sans-IO AT core (command lines out,
replies and +EVT lines in), the events it means, and ModemNode's send() over a module scripted line by line: boot
configuration, join, uplink with downlink and ACK, and every refusal a module gives (busy, no session, too long, a
failed join and its back-off, silence); and every app booted by main.py on a RAK3172 board (installed as .mpy)
through a join, a config downlink and readings in a bounded heap."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dos_agent.firmware_install import compile_module, node_kinds, stage_firmware
from dos_codecs.schema import load_schema
from firmware_support import run_firmware, run_micropython
from test_firmware_memory import BOOT_RUN, config_for, install

SCRIPTED_UART = '''
import json
import time


class ScriptedUart:
    """A module answering by script: `script` is a list of (command prefix, reply lines); each written command must
    start with the next prefix, and its reply lines are queued (events may follow the status line)."""

    def __init__(self, script):
        self.script, self.queue, self.written = list(script), [], []

    def write(self, data):
        line = data.decode().strip()
        self.written.append(line)
        expected, replies = self.script.pop(0) if self.script else ("<nothing>", [])
        if not line.startswith(expected):
            raise AssertionError("module got %r, script expected %r" % (line, expected))
        self.queue += [(r + "\\r\\n").encode() for r in replies]
        return len(data)

    def readline(self):
        if self.queue:
            return self.queue.pop(0)
        time.sleep_ms(1000)  # the UART timeout passes in virtual time
        return None

    def any(self):
        return len(self.queue)


def fields(event):
    """The (name, value) pairs of an event (a namedtuple of lorawan/events.py, whose fields dir() lists)."""
    return [(k, getattr(event, k)) for k in dir(event) if not k.startswith('_')]


def describe(events):
    return [dict(type=type(e).__name__, **{k: (v.hex() if isinstance(v, (bytes, bytearray)) else v)
                                            for k, v in fields(e)}) for e in events]
'''

CONFIG = {"board": "emu_rak3172", "kind": "streetlight", "asset_id": "SL-R-1", "activation": "otaa",
          "dev_eui": "70b3d57ed0050001", "join_eui": "70b3d57ed0000000", "app_key": "2b7e151628aed2a6abf7158809cf4f3c",
          "interval_s": 60, "data_rate": 3, "adr": True}
BOOT = [("ATZ", ["RAKwireless RAK3172", "Current Work Mode: LoRaWAN."]), ("AT", ["OK"]),
        ("AT+NWM=1", ["OK"]), ("AT+BAND=4", ["OK"]), ("AT+NJM=1", ["OK"]), ("AT+DEVEUI=70b3d57ed0050001", ["OK"]),
        ("AT+APPEUI=70b3d57ed0000000", ["OK"]), ("AT+APPKEY=", ["OK"]), ("AT+CLASS=A", ["OK"]), ("AT+ADR=1", ["OK"]),
        ("AT+DR=3", ["OK"]), ("AT+RETY=3", ["OK"]), ("AT+CFM=0", ["OK"])]


def run_node(script: list, body: str) -> list[dict]:
    """Boot a ModemNode on a scripted module and run `body` (which prints JSON lines); returns them."""
    code = SCRIPTED_UART + f"""
from drivers.rak3172 import ModemError, node_from_config
uart = ScriptedUart({script!r})
node = node_from_config({CONFIG!r}, lambda options: uart)
""" + body + """
print(json.dumps({"left": uart.script}))
"""
    return [json.loads(line) for line in run_firmware(code).splitlines()]


def test_at_protocol_lines_in_replies_and_events_out():
    out = run_micropython("""
from drivers.rak3172 import AtProtocol, Reply
p = AtProtocol()
print(p.feed(b'RAKwireless RAK3172 banner\\r\\n'))
print(p.command('JOIN', '1:0:10:1'), p.command('DR', read=True), p.command('JOIN'))
print(p.feed(b'+EVT:JOINED\\r\\n'))
print(p.feed(b'3\\r\\n'))
r = p.feed(b'OK\\r\\n')
print(isinstance(r, Reply), r.status, r.values, p.pending)
p.command('SEND', '1:aa')
r = p.feed('AT_BUSY_ERROR')
print(r.status, r.values)
print(p.feed(b'\\r\\n'))
""").splitlines()
    assert out == ["None", "b'AT+JOIN=1:0:10:1\\r\\n' b'AT+DR=?\\r\\n' b'AT+JOIN\\r\\n'", "JOINED", "None",
                   "True OK ['3'] None", "AT_BUSY_ERROR []", "None"]


def test_events_the_module_reports():
    out = run_micropython("""
from drivers.rak3172 import parse_event
for text in ('JOINED', 'JOIN_FAILED_RX_TIMEOUT', 'TX_DONE', 'SEND_CONFIRMED_OK', 'SEND_CONFIRMED_FAILED',
             'RX_2:-97:-3:UNICAST:3:A10114', 'LINKCHECK:0:12:2:-80:7', 'TXP2P DONE'):
    name, event = parse_event(text)
    # an event is a namedtuple (lorawan/events.py): its fields are what dir() lists
    print(name, event if event is None or event in (True, False) else
          sorted((k, getattr(event, k)) for k in dir(event) if not k.startswith('_')))
for bad in ('RX_1:-97:UNICAST:3:A1', 'RX_1:-97:5:UNICAST:3:A1Z', 'LINKCHECK:0:x:2:-80:7'):
    try:
        parse_event(bad)
        print('accepted', bad)
    except ValueError:
        print('refused')
""").splitlines()
    assert out[:5] == ["joined None", "join_failed None", "done None", "done True", "done False"]
    assert out[5] == ("downlink [('fcnt', -1), ('fport', 3), ('payload', b'\\xa1\\x01\\x14'), ('rssi', -97), "
                      "('snr', -3), ('window', 2)]")
    assert out[6] == "linkcheck [('gateways', 2), ('margin', 12)]"
    assert out[7] == "other None"
    assert out[8:] == ["refused"] * 3


def test_boot_join_and_a_confirmed_uplink_with_a_downlink():
    script = BOOT + [
        ("AT+JOIN=1:0:10:1", ["OK", "+EVT:JOINED"]), ("AT+DEVADDR=?", ["26AA0001", "OK"]),
        ("AT+CFM=1", ["OK"]), ("AT+SEND=3:a10114", ["OK", "+EVT:RX_1:-70:8:UNICAST:3:A10214",
                                                    "+EVT:SEND_CONFIRMED_OK"]), ("AT+DR=?", ["5", "OK"]),
        ("AT+SEND=1:c3", ["OK", "+EVT:RX_1:-70:UNICAST", "+EVT:TX_DONE"]), ("AT+DR=?", ["5", "OK"]),
    ]
    out = run_node(script, """
print(json.dumps([node.mac.activated, node.data_rate]))
print(json.dumps(describe(node.send(3, bytes.fromhex('a10114'), True))))
print(json.dumps([node.mac.activated, node.data_rate]))
print(json.dumps(describe(node.send(1, b'\\xc3', True))))
print(json.dumps(node.counters))
""")
    assert out[0] == [False, 3]
    joined, sent, downlink, done = out[1]
    assert joined == {"type": "Joined", "dev_addr": 0x26AA0001, "dev_nonce": -1, "window": None, "dr": 3}
    assert sent["type"] == "Sent" and sent["fcnt"] == 0 and sent["fport"] == 3 and sent["airtime_us"] > 100000
    assert downlink == {"type": "Downlink", "fport": 3, "payload": "a10214", "fcnt": -1, "window": 1, "rssi": -70,
                        "snr": 8}
    assert done == {"type": "Done", "fcnt": 0, "acked": True}
    assert out[2] == [True, 5], "ADR: the node follows the module's data rate"
    assert [e["type"] for e in out[3]] == ["Sent", "Done"]
    assert out[3][1]["acked"] is None, "TX_DONE ends an exchange the module sent unconfirmed"
    assert out[4] == {"malformed_event": 1}, "a malformed event line is counted and skipped"
    assert out[-1] == {"left": []}


def test_refusals_become_not_sent_and_a_silent_module_raises():
    script = BOOT + [
        ("AT+JOIN=1:0:10:1", ["OK", "+EVT:JOIN_FAILED_RX_TIMEOUT"]),
        ("AT+JOIN=1:0:10:1", ["OK", "+EVT:JOINED"]), ("AT+DEVADDR=?", ["26AA0002", "OK"]),
        ("AT+SEND=1:01", ["AT_BUSY_ERROR"]),
        ("AT+SEND=1:02", ["AT_PARAM_ERROR"]),
        ("AT+SEND=1:03", ["AT_NO_NETWORK_JOINED"]),  # the module reset itself: set it up again, then join
    ] + BOOT[2:] + [
        ("AT+JOIN=1:0:10:1", ["OK", "+EVT:JOINED"]), ("AT+DEVADDR=?", ["26AA0003", "OK"]),
        ("AT+SEND=1:04", ["OK"]),  # then silence: no end of the exchange
    ]
    out = run_node(script, """
def kinds(events):
    return [(type(e).__name__, getattr(e, 'reason', None)) for e in events]
print(json.dumps(kinds(node.send(1, b'\\x00'))))
print(json.dumps(kinds(node.send(1, b'\\x00'))))
node.sleep_until(node.next_join_ms)
print(json.dumps(kinds(node.send(1, b'\\x01'))))
print(json.dumps(kinds(node.send(1, b'\\x02'))))
print(json.dumps(kinds(node.send(1, b'\\x03'))))
try:
    node.send(1, b'\\x04')
    print(json.dumps('no error'))
except ModemError as exc:
    print(json.dumps([exc.status, str(exc), node.now_ms()]))
""")
    assert out[0] == [["JoinFailed", None], ["NotSent", "not_joined"]]
    assert out[1] == [["NotSent", "not_joined"]], "within the join back-off nothing goes to the module"
    assert out[2] == [["Joined", None], ["NotSent", "busy"]]
    assert out[3] == [["NotSent", "too_long"]]
    assert out[4] == [["NotSent", "not_joined"]]
    status, text, now_ms = out[5]
    assert status == "timeout" and "SEND" in text and now_ms >= 60000
    assert out[-1] == {"left": []}


def test_a_late_answer_to_an_abandoned_command_cannot_pass_for_the_next_commands():
    """A board interrupted mid-command (mpremote stopping the app for the self-test) leaves that command's answer in
    the UART; the next command must get its own answer, and an event among the leftovers is kept."""
    out = run_micropython(SCRIPTED_UART + """
from drivers.rak3172 import Rak3172
uart = ScriptedUart([('AT+VER=?', ['RUI_4.0.6_RAK3172-E', 'OK']), ('AT+DR=?', ['3', 'OK'])])
modem = Rak3172(uart)
uart.queue = [b'5\\r\\n', b'OK\\r\\n']
print(modem.at('VER', read=True))
uart.queue = [b'+EVT:TX_DONE\\r\\n', b'AT_BUSY_ERROR\\r\\n']
print(modem.at('DR', read=True), modem.events, uart.script)
""").splitlines()
    assert out == ["RUI_4.0.6_RAK3172-E", "3 ['TX_DONE'] []"]


def test_a_bad_config_is_refused_before_the_uart_is_opened():
    out = run_micropython("""
from config import ConfigError
from drivers.rak3172 import node_from_config
opened = []
for config in ({'activation': 'otaa', 'dev_eui': '70b3', 'join_eui': '70b3d57ed0000000', 'app_key': '00' * 16},
               {'activation': 'abp', 'dev_addr': '26011234', 'nwk_s_key': '00' * 16, 'app_s_key': '00' * 15},
               {'activation': 'otaa', 'data_rate': 9}, {'activation': 'lora'}):
    try:
        node_from_config(config, lambda options: opened.append(options))
    except ConfigError as exc:
        print(str(exc))
print(opened)
""").splitlines()
    assert out == ["dev_eui must be 16 hex digits", "app_s_key must be 32 hex digits",
                   "config.data_rate must be a number in [0, 5]", "activation 'lora' is not supported (abp, otaa)",
                   "[]"]


# ---- memory: every app on a RAK3172 board in a bounded heap (the LoRaWAN MAC runs in the module)

# Issue 4's goal, met on this path: every app on a RAK3172 board runs in 64K (smallest heap: environment 60K, waste
# 61-62K, bridge 62K, streetlight 63K; the run is deterministic, a heap's placement moves it by up to ~0.5K). The
# budget is the goal itself.
HEAP_BUDGET = "64K"
MODEM_READINGS = 4
# boards/memtest_rak.py: the memory test's board (boards/memtest: every sensor answers) with a RAK3172 on its UART that
# answers by modem.json: joins, brings the config downlink with the first uplink, ends the run at the last send.
MEMTEST_RAK_BOARD = '''"""boards/memtest with a scripted RAK3172 on its UART (modem.json: {"config_hex", "sends"})."""
import gc
import json
import time

from boards.memtest import BATTERY_DIVIDER, battery_volts, crack_gauge_volts, i2c, lamp, strain_adcs  # noqa: F401


class ScriptedModule:
    def __init__(self, config_hex, sends):
        self.config_hex, self.sends_left, self.queue = config_hex, sends, []

    def write(self, data):
        line = bytes(data).decode().strip()
        replies = ["OK"]
        if line == "AT+DEVADDR=?" or line == "AT+DR=?":
            replies = ["26AA0042" if "DEVADDR" in line else "5", "OK"]
        elif line.startswith("AT+JOIN="):
            replies = ["OK", "+EVT:JOINED"]
        elif line.startswith("AT+SEND="):
            print(json.dumps({"send": line[8:]}))
            self.sends_left -= 1
            if self.sends_left < 0:
                raise SystemExit
            downlink = ["+EVT:RX_1:-70:8:UNICAST:3:" + self.config_hex] if self.config_hex else []
            self.config_hex = ""
            replies = ["OK"] + downlink + ["+EVT:TX_DONE"]
        self.queue += [(r + "\\r\\n").encode() for r in replies]
        return len(data)

    def readline(self):
        if self.queue:
            return self.queue.pop(0)
        time.sleep_ms(1000)
        return None

    def any(self):
        return len(self.queue)


def lorawan_modem(options=None):
    with open("modem.json") as f:
        script = json.load(f)
    gc.collect()
    print("started", gc.mem_alloc(), gc.mem_free())
    return ScriptedModule(script["config_hex"], script["sends"])
'''


@pytest.fixture(scope="module")
def rak_firmware(tmp_path_factory) -> dict[str, Path]:
    """kind -> a folder with the kind's firmware for a RAK3172 board (each board gets its own kind's schema table)."""
    folders = {}
    for kind in node_kinds():
        folder = install(tmp_path_factory.mktemp("fw-rak-" + kind), kind)
        stage_firmware("emu_rak3172", kind, folder)
        source = folder / "boards" / "memtest_rak.py"
        source.write_text(MEMTEST_RAK_BOARD)
        (folder / "boards" / "memtest_rak.mpy").write_bytes(compile_module(source, "boards/memtest_rak.py"))
        source.unlink()
        folders[kind] = folder
    return folders


@pytest.mark.parametrize("kind", node_kinds())
def test_each_app_on_a_rak3172_board_runs_in_its_heap_budget(kind, rak_firmware):
    schema = load_schema(kind)
    board = rak_firmware[kind]  # its files, config.json and state.json in one folder, imported by short paths
    (board / "config.json").write_text(json.dumps({**config_for(kind), "board": "memtest_rak"}))
    (board / "modem.json").write_text(json.dumps({"config_hex": schema.encode("config", {"interval_s": 30}).hex(),
                                                  "sends": MODEM_READINGS}))
    (board / "state.json").unlink(missing_ok=True)
    lines = run_micropython(BOOT_RUN, path=[""], cwd=board, heap=HEAP_BUDGET).splitlines()
    text = [line for line in lines if not line.startswith("{")]
    assert [line for line in text if "Error" in line or " failed" in line] == []  # no reading skipped for want of heap
    assert "joined: DevAddr 26aa0042, DevNonce ?, DR5" in text, text  # the module keeps DevNonce to itself
    assert "config: interval_s 60 -> 30 (downlink fcnt ?)" in text, text
    assert text[-1].startswith("finished "), text
    sends = [json.loads(line)["send"] for line in lines if line.startswith("{")]
    assert len(sends) == MODEM_READINGS + 1
    for send in sends[:-1]:
        port, payload = send.split(":")
        assert schema.decode(int(port), bytes.fromhex(payload)).warnings == []


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.one_of(
    st.binary(max_size=60),
    st.builds(lambda head, rest: (head + rest).encode(), st.sampled_from(["+EVT:RX_1:", "+EVT:RX_2:", "+EVT:LINKCHECK:",
                                                                          "+EVT:SEND_CONFIRMED_", "OK", "AT_"]),
              st.text("0123456789ABCDEFabcdef:-UNICAST \\r", max_size=40)),
), min_size=40, max_size=60))
def test_any_line_from_the_module_is_a_reply_an_event_or_a_typed_error(lines):
    out = run_micropython("""
from drivers.rak3172 import AtProtocol, Reply, parse_event
p = AtProtocol()
kinds = {}
for i, line in enumerate(LINES):
    if i % 3 == 0:
        p.command('DR', read=True)
    try:
        item = p.feed(line)
    except UnicodeError:
        item = 'unicode'
    if isinstance(item, str) and item != 'unicode':
        try:
            item = parse_event(item)[0]
        except ValueError:
            item = 'bad_event'
    key = type(item).__name__ if not isinstance(item, str) else item
    kinds[key] = kinds.get(key, 0) + 1
print(sum(kinds.values()))
""".replace("LINES", repr(lines)))
    assert int(out.strip()) == len(lines), "every line handled, no other exception"
