"""The rig's RAK3172 emulator (dos_rig.rak3172) on a real virtual clock and air: AT replies and errors, OTAA join,
confirmed uplink with a retry, RX2 downlink with a MAC command, P2P send/receive, ATZ; and `dos-edge rig rak3172` on a
real pty driven with pyserial as a single-channel receiver hearing a real firmware node, recovering after a reset; and
the emulated board's machine.UART wired to the module (reads waiting in virtual time, a wrong baud rate garbling)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from dos_agent.firmware_install import install_firmware
from dos_codecs.crypto import SessionKeys, derive_session_keys, seal_join_accept, verify_join_request
from dos_codecs.lorawan import DataFrame, JoinAccept, MType, parse_data_frame, parse_join_request
from dos_codecs.mac_commands import LinkADRAns, LinkADRReq, build_cf_list, build_mac_commands, parse_mac_commands
from dos_rig.air import Air, Modulation
from dos_rig.clock import VirtualClock
from dos_rig.rak3172 import VERSION, Rak3172
from dos_rig.rig import Rig

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))
APP_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
DEV_EUI, JOIN_EUI = "70B3D57ED0050001", "70B3D57ED0000000"
DEV_ADDR, JOIN_NONCE, NET_ID = 0x26AA0001, 7, 0x13


class World:
    """A clock and an air with modules on it; `advance()` runs virtual time."""

    def __init__(self):
        self.clock = VirtualClock()
        self.air = Air(self.clock)
        self.out: dict[str, bytearray] = {}

    def module(self, module_id: str, position=(0.0, 0.0)) -> Rak3172:
        self.out[module_id] = bytearray()
        return Rak3172(module_id, self.clock, self.air, position, output=self.out[module_id].extend)

    def advance_to(self, t_us: int) -> None:
        self.clock.call_at(t_us, lambda: None)
        while self.clock.now_us < t_us:
            self.clock.step(0.0)
        self.clock.run_due()

    def advance(self, us: int) -> None:
        self.advance_to(self.clock.now_us + us)

    def lines(self, module_id: str) -> list[str]:
        """Lines the module wrote since the last call."""
        text = self.out[module_id].decode()
        self.out[module_id].clear()
        assert text == "" or text.endswith("\r\n"), text
        return text.splitlines()

    def at(self, module: Rak3172, line: str) -> list[str]:
        module.receive(line.encode() + b"\r\n")
        return self.lines(module.receiver_id)

    def downlink(self, freq_hz: float, sf: int, phy: bytes, at_us: int) -> None:
        """A gateway 100 m away transmits phy (inverted IQ) at at_us."""
        mod = Modulation(freq_hz=freq_hz, sf=sf, bw_hz=125_000, iq_inverted=True, crc=False, ldro=sf >= 11)
        self.clock.call_at(at_us, lambda: self.air.transmit("gateway", (100.0, 0.0), mod, phy, 14.0))


def test_at_replies_and_errors():
    world = World()
    rak = world.module("rak")
    assert world.at(rak, "AT") == ["OK"]
    rak.receive(b"AT+N")
    rak.receive(b"JM=?\r\n")  # a line in two pieces
    assert world.lines("rak") == ["1", "OK"]
    assert world.at(rak, "AT+NJM?")[-1] == "OK"
    assert world.at(rak, "AT+FOO=1") == ["AT_COMMAND_NOT_FOUND"]
    assert world.at(rak, "AT+DR=9") == ["AT_PARAM_ERROR"]
    assert world.at(rak, "AT+DEVEUI=12") == ["AT_PARAM_ERROR"]
    assert world.at(rak, "AT+SEND=1:AA") == ["AT_NO_NETWORK_JOINED"]
    assert world.at(rak, "AT+SEND=0:AA") == ["AT_PARAM_ERROR"]
    assert world.at(rak, "AT+PRECV=65534") == ["AT_MODE_NO_SUPPORT"]
    assert world.at(rak, "AT+CLASS=C") == ["AT_MODE_NO_SUPPORT"]
    assert world.at(rak, "AT+BAND=1") == ["AT_PARAM_ERROR"]
    assert world.at(rak, "hello") == ["AT_ERROR"]
    rak.receive(b"AT+SEND=1:" + b"A" * 700 + b"\r\n")
    assert world.lines("rak") == ["AT_PARAM_ERROR"]
    assert world.at(rak, "AT+DEVEUI=" + DEV_EUI) == ["OK"]
    assert world.at(rak, "AT+DEVEUI=?") == [DEV_EUI, "OK"]
    assert rak.counters["unknown_command"] == 1 and rak.counters["line_too_long"] == 1
    assert rak.counters["at_param_error"] >= 2


STATUS_LINES = {"OK", "AT_ERROR", "AT_PARAM_ERROR", "AT_BUSY_ERROR", "AT_NO_NETWORK_JOINED", "AT_MODE_NO_SUPPORT",
                "AT_COMMAND_NOT_FOUND"}
COMMAND_NAMES = ["NWM", "NJM", "NJS", "JOIN", "SEND", "RECV", "DR", "ADR", "CFM", "RETY", "TXP", "DEVEUI", "APPKEY",
                 "DEVADDR", "P2P", "PSEND", "PRECV", "SYNCWORD", "IQINVER", "CLASS", "BAND", "LINKCHECK", "VER", "XYZ"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(
    st.binary(max_size=40),
    st.builds(lambda name, form, arg: f"AT+{name}{form}{arg}\r\n".encode(), st.sampled_from(COMMAND_NAMES),
              st.sampled_from(["", "?", "=?", "="]), st.text("0123456789ABCDEFabcdef:xyz-", max_size=24)),
), max_size=25))
def test_any_input_gets_a_status_line_and_never_breaks_the_module(chunks):
    world = World()
    rak = world.module("rak")
    for chunk in chunks:
        rak.receive(chunk)
        world.advance(50_000)
    rak.receive(b"\r\nAT\r\n")
    lines = world.lines("rak")
    assert lines[-1] == "OK", "still answering after the noise"
    assert all(line in STATUS_LINES or line.startswith(("+EVT:", "AT+")) or ":" in line or line.isalnum()
               or line.startswith(("RAKwireless", "Current Work Mode", "RUI_")) for line in lines), lines


def configure_otaa(world, rak):
    for line in ("AT+NWM=1", "AT+NJM=1", f"AT+DEVEUI={DEV_EUI}", f"AT+APPEUI={JOIN_EUI}", f"AT+APPKEY={APP_KEY.hex()}",
                 "AT+DR=5", "AT+ADR=1"):
        assert world.at(rak, line) == ["OK"], line


def join(world, rak):
    assert world.at(rak, "AT+JOIN=1:0:8:1") == ["OK"]
    world.advance(1000)
    request_tx = rak.transmitted[-1]
    request = parse_join_request(request_tx.phy)
    verify_join_request(request, APP_KEY)
    assert request.dev_eui.hex().upper() == DEV_EUI and request_tx.mod.freq_hz in (868.1e6, 868.3e6, 868.5e6)
    accept = JoinAccept(JOIN_NONCE, NET_ID, DEV_ADDR, rx_delay=1, cf_list=build_cf_list([867_100_000, 867_300_000]))
    world.downlink(request_tx.mod.freq_hz, request_tx.mod.sf, seal_join_accept(accept, APP_KEY),
                   request_tx.end_us + 5_000_000)
    world.advance_to(request_tx.end_us + 7_000_000)
    assert world.lines(rak.receiver_id) == ["+EVT:JOINED"]
    nwk, app = derive_session_keys(APP_KEY, JOIN_NONCE, NET_ID, request.dev_nonce)
    return SessionKeys(nwk, app), request.dev_nonce


def test_otaa_join_confirmed_uplink_retry_and_rx2_downlink_with_a_mac_command():
    world = World()
    rak = world.module("rak")
    configure_otaa(world, rak)
    keys, _nonce = join(world, rak)
    assert world.at(rak, "AT+NJS=?") == ["1", "OK"]
    assert world.at(rak, "AT+DEVADDR=?") == ["26AA0001", "OK"]
    assert world.at(rak, "AT+CFM=1") == ["OK"] and world.at(rak, "AT+RETY=1") == ["OK"]
    assert world.at(rak, "AT+SEND=3:A1B2") == ["OK"]
    assert world.at(rak, "AT+SEND=3:A1B2") == ["AT_BUSY_ERROR"]
    world.advance(1000)
    first = rak.transmitted[-1]
    frame = parse_data_frame(first.phy)
    assert frame.mtype == MType.CONFIRMED_UP and frame.fcnt16 == 0 and frame.adr
    assert keys.open(frame, 0) == bytes.fromhex("a1b2")
    world.advance_to(first.end_us + 3_500_000)  # no answer in RX1 or RX2: the module tries again
    world.advance(3_000_000)
    retry = rak.transmitted[-1]
    assert retry is not first and retry.phy == first.phy, "the retry is the same frame"
    assert world.lines("rak") == []
    downlink = DataFrame(MType.UNCONFIRMED_DOWN, DEV_ADDR, 0, ack=True, fport=5, frm_payload=bytes.fromhex("0102"),
                         fopts=build_mac_commands([LinkADRReq(data_rate=3, tx_power=1, ch_mask=0x001F)]))
    world.downlink(869_525_000, 12, keys.seal(downlink, 0), retry.end_us + 2_000_000)
    world.advance_to(retry.end_us + 5_000_000)
    events = world.lines("rak")
    assert re.fullmatch(r"\+EVT:RX_2:-?\d+:-?\d+:UNICAST:5:0102", events[0]), events
    assert events[1:] == ["+EVT:SEND_CONFIRMED_OK"]
    assert world.at(rak, "AT+RECV=?") == ["5:0102", "OK"]
    assert world.at(rak, "AT+DR=?") == ["3", "OK"], "LinkADRReq applied"
    assert world.at(rak, "AT+CFM=0") == ["OK"] and world.at(rak, "AT+SEND=3:C3") == ["OK"]
    world.advance(1000)
    second = rak.transmitted[-1]
    frame = parse_data_frame(second.phy)
    assert frame.fcnt16 == 1 and frame.mtype == MType.UNCONFIRMED_UP and second.mod.sf == 9
    assert parse_mac_commands(frame.fopts, uplink=True) == [LinkADRAns(True, True, True)]
    world.advance_to(second.end_us + 3_000_000)
    assert world.lines("rak") == ["+EVT:TX_DONE"]


def test_at_sf12_a_long_rx1_frame_outlasting_the_rx2_instant_decides_the_exchange():
    world = World()
    rak = world.module("rak")
    configure_otaa(world, rak)
    assert world.at(rak, "AT+ADR=0") == ["OK"] and world.at(rak, "AT+DR=0") == ["OK"]
    keys, _nonce = join(world, rak)  # the JoinAccept at SF12 lasts about 1.5 s: longer than RX1 to RX2
    assert world.at(rak, "AT+SEND=3:01") == ["OK"]
    world.advance(1000)
    sent = rak.transmitted[-1]
    other = DataFrame(MType.UNCONFIRMED_DOWN, DEV_ADDR + 1, 0, fport=7, frm_payload=bytes(40))  # not for this module
    world.downlink(sent.mod.freq_hz, 12, keys.seal(other, 0), sent.end_us + 1_000_000)
    world.advance_to(sent.end_us + 2_000_000)
    assert world.lines("rak") == [], "still receiving the long frame at the RX2 instant"
    world.advance_to(sent.end_us + 5_000_000)
    assert world.lines("rak") == ["+EVT:TX_DONE"], "the foreign frame ended the exchange: no window was left"
    assert rak.counters["rx_not_for_me"] == 1
    assert world.at(rak, "AT+SEND=3:02") == ["OK"]
    world.advance(1000)
    sent = rak.transmitted[-1]
    ours = DataFrame(MType.UNCONFIRMED_DOWN, DEV_ADDR, 0, fport=7, frm_payload=bytes(40))
    world.downlink(sent.mod.freq_hz, 12, keys.seal(ours, 0), sent.end_us + 1_000_000)
    world.advance_to(sent.end_us + 5_000_000)
    events = world.lines("rak")
    assert events[0].startswith("+EVT:RX_1:") and events[0].endswith(":UNICAST:7:" + "00" * 40), events
    assert events[1:] == ["+EVT:TX_DONE"]


def test_a_forged_downlink_is_ignored_and_unanswered_confirmed_uplink_fails():
    world = World()
    rak = world.module("rak")
    configure_otaa(world, rak)
    keys, _nonce = join(world, rak)
    assert world.at(rak, "AT+CFM=1") == ["OK"] and world.at(rak, "AT+RETY=0") == ["OK"]
    assert world.at(rak, "AT+SEND=3:01") == ["OK"]
    world.advance(1000)
    sent = rak.transmitted[-1]
    forged = bytearray(keys.seal(DataFrame(MType.UNCONFIRMED_DOWN, DEV_ADDR, 0, ack=True, fport=5,
                                           frm_payload=b"\x09"), 0))
    forged[-1] ^= 1
    world.downlink(sent.mod.freq_hz, sent.mod.sf, bytes(forged), sent.end_us + 1_000_000)
    world.advance_to(sent.end_us + 4_000_000)
    assert world.lines("rak") == ["+EVT:SEND_CONFIRMED_FAILED"]
    assert rak.counters["rx_mic_failed"] == 1


def test_join_without_answer_fails_after_its_attempts_and_never_reuses_a_devnonce():
    world = World()
    rak = world.module("rak")
    configure_otaa(world, rak)
    assert world.at(rak, "AT+JOIN=1:0:7:2") == ["OK"]
    world.advance(30_000_000)
    assert world.lines("rak") == ["+EVT:JOIN_FAILED_RX_TIMEOUT"]
    nonces = [parse_join_request(tx.phy).dev_nonce for tx in rak.transmitted]
    assert nonces == [0, 1]
    assert world.at(rak, "ATZ")[-1] == "Current Work Mode: LoRaWAN."
    configure_otaa(world, rak)
    assert world.at(rak, "AT+JOIN=1:0:7:1") == ["OK"]
    world.advance(1000)
    assert parse_join_request(rak.transmitted[-1].phy).dev_nonce == 2, "DevNonce survives ATZ (module flash)"


def p2p_receiver(world, rak, sync="3444"):
    for line in ("AT+NWM=0", "AT+P2P=868100000:7:0:0:8:14", f"AT+SYNCWORD={sync}", "AT+PRECV=65534"):
        assert world.at(rak, line) == ["OK"], line


def test_p2p_continuous_receive_hears_every_matching_frame_until_reset():
    world = World()
    sender, receiver, other = world.module("tx", (0.0, 0.0)), world.module("rx", (300.0, 0.0)), world.module("o")
    p2p_receiver(world, receiver)
    p2p_receiver(world, other, sync="1424")  # private sync word: hears nothing LoRaWAN-like
    for line in ("AT+NWM=0", "AT+P2P=868100000:7:0:0:8:14", "AT+SYNCWORD=3444"):
        assert world.at(sender, line) == ["OK"]
    assert world.at(receiver, "AT+PSEND=01") == ["AT_BUSY_ERROR"], "no sending while receiving"
    for payload in ("400102", "40AABBCC"):
        assert world.at(sender, f"AT+PSEND={payload}") == ["OK"]
        world.advance(200_000)
        assert world.lines("tx") == ["+EVT:TXP2P DONE"]
        heard = world.lines("rx")
        assert len(heard) == 1 and re.fullmatch(rf"\+EVT:RXP2P:-\d+:\d+:{payload}", heard[0]), heard
    assert world.lines("o") == []
    receiver.reset()
    banner = world.lines("rx")
    assert banner[-1] == "Current Work Mode: LoRaWAN." and receiver.resets == 1
    assert world.at(receiver, "AT+PRECV=65534") == ["AT_MODE_NO_SUPPORT"], "after a reset it must be set up again"
    assert world.at(sender, "AT+PSEND=4001") == ["OK"]
    world.advance(200_000)
    assert world.lines("rx") == []
    assert world.at(receiver, "AT+NWM=0") == ["OK"] and world.at(receiver, "AT+P2P=?") == ["868000000:7:0:0:8:14", "OK"]
    assert world.at(receiver, "AT+PRECV=100") == ["OK"]
    world.advance(150_000)
    assert world.lines("rx") == ["+EVT:RXP2P RECEIVE TIMEOUT"]


@pytest.mark.hil
def test_rig_rak3172_command_serves_a_pty_receiver_that_hears_a_node_and_recovers_from_a_reset(tmp_path):
    link, board_link, folder = tmp_path / "ttyRAK0", tmp_path / "ttyEMU0", tmp_path / "board"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from dos_rig.cli import main; sys.exit(main(sys.argv[1:]))", "rak3172",
         "--tty", str(link), "--board-dir", str(folder), "--board-tty", str(board_link), "--speed", "20",
         "--workdir", str(tmp_path / "work")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 15
        while not (link.is_symlink() and board_link.is_symlink()) and time.monotonic() < deadline:
            time.sleep(0.05)
        config = {"board": "emu", "kind": "streetlight", "asset_id": "SL-P2P-1", "dev_eui": DEV_EUI,
                  "activation": "abp", "dev_addr": "26011234", "nwk_s_key": os.urandom(16).hex(),
                  "app_s_key": os.urandom(16).hex(), "interval_s": 10, "data_rate": 5, "adr": False,
                  "settings": {}, "calibration": {}}
        install_firmware(str(board_link), "emu", "streetlight", config, log=lambda _s: None)
        with serial.Serial(str(link), 115200, timeout=0.2) as port:
            def command(line: str) -> list[str]:
                port.write(line.encode() + b"\r\n")
                replies = []
                while not replies or replies[-1] not in ("OK", "AT_ERROR", "AT_PARAM_ERROR", "AT_BUSY_ERROR",
                                                          "AT_MODE_NO_SUPPORT"):
                    raw = port.readline()
                    assert raw, f"no reply to {line}: {replies}"
                    replies.append(raw.decode().strip())
                return replies

            def receive_frames(count: int, timeout_s: float = 60) -> list[bytes]:
                frames, end = [], time.monotonic() + timeout_s
                while len(frames) < count and time.monotonic() < end:
                    text = port.readline().decode().strip()
                    if text.startswith("+EVT:RXP2P:"):
                        frames.append(bytes.fromhex(text.rsplit(":", 1)[1]))
                return frames

            def set_up() -> None:
                for line in ("AT+NWM=0", "AT+P2P=868100000:7:0:0:8:14", "AT+SYNCWORD=3444", "AT+IQINVER=0",
                             "AT+PRECV=65534"):
                    assert command(line)[-1] == "OK", line

            set_up()
            frames = receive_frames(2)
            assert len(frames) == 2, "the single-channel receiver heard the node's uplinks on 868.1 MHz"
            assert all(parse_data_frame(f).dev_addr == 0x26011234 for f in frames)
            proc.send_signal(signal.SIGUSR1)  # the module resets: it stops receiving until set up again
            end = time.monotonic() + 10
            while time.monotonic() < end and "Current Work Mode" not in port.readline().decode():
                pass
            port.reset_input_buffer()
            set_up()
            assert len(receive_frames(1)) == 1, "heard again after the host set the module up again"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0 and "rak3172 rak1: reset" in out and "stopped" in out
        assert not link.exists() and not link.is_symlink()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.hil
def test_board_uart_reads_wait_in_virtual_time_and_a_wrong_baud_rate_garbles(tmp_path):
    code = """
import time
from machine import UART, Pin
slow = UART(1, baudrate=9600, tx=Pin(17), rx=Pin(23), timeout=500)
slow.write(b'AT\\r\\n')
t0 = time.ticks_ms()
print('slow', slow.readline(), time.ticks_diff(time.ticks_ms(), t0) >= 500)
uart = UART(1, baudrate=115200, tx=Pin(17), rx=Pin(23), timeout=500)
uart.write(b'AT+VER=?\\r\\n')
print('ver', uart.readline(), uart.readline(), uart.any())
uart.write(b'AT+NJM=?\\r\\n')
print('read', uart.read(3), uart.read())
"""
    with Rig(tmp_path / "rig") as rig:
        board = rig.add_board("b1", tmp_path / "b1", rak3172=True)
        run = subprocess.run([MPREMOTE, "connect", str(board.link), "resume", "exec", code],
                             capture_output=True, text=True, timeout=60)
        counters = rig.counters()["boards"]["b1"]
    lines = run.stdout.splitlines()
    assert lines[0] == "slow None True", run.stdout + run.stderr
    assert lines[1] == "ver b'%s\\r\\n' b'OK\\r\\n' 0" % VERSION
    assert lines[2] == "read b'1\\r\\n' b'OK\\r\\n'"
    assert counters["uart"] == {"garbled_baud_mismatch": 4}
    assert board.rak3172.counters == {}, "the module never saw the garbled bytes"
