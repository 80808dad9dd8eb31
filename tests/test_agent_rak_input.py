"""The agent's RAK3172 single-channel receiver input (dos_agent.rak_input): the line parser on valid, malformed and boot
lines (hypothesis: only typed errors on any bytes), the sans-IO core configuring the rig's RAK3172 emulator for P2P
receive, handing over the frames it hears and configuring it again after a reset (banner, probe, silence), and the
asyncio edge on a real pty: a port that appears late or disappears is (re)opened."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dos_agent.app import AgentConfig
from dos_agent.config import ConfigError, parse_config
from dos_agent.counters import Counters
from dos_agent.rak_input import (
    Banner,
    Event,
    FrameHeard,
    LineRejected,
    Notice,
    RadioSettings,
    RakInput,
    ReceiverCore,
    SendLine,
    Status,
    Value,
    default_gateway_id,
    parse_line,
)
from dos_agent.session import Reception
from dos_codecs.rak3172 import AtLineError, RxP2p
from dos_rig.air import Air, Modulation
from dos_rig.clock import VirtualClock
from dos_rig.rak3172 import PtyLink, Rak3172

PHY = bytes.fromhex("40341201260000010103d1e2c3f4a5")  # an unconfirmed data up of DevAddr 26011234 (MIC unchecked here)
SETUP = ["AT", "AT+NWM=0", "AT+PRECV=0", "AT+P2P=868100000:7:0:0:8:14", "AT+SYNCWORD=3444", "AT+IQINVER=0",
         "AT+PRECV=65534"]


# --- the line parser ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, expected", [
    (b"+EVT:RXP2P:-41:9:" + PHY.hex().upper().encode(), RxP2p(-41, 9, PHY)),
    (b"+evt:rxp2p:-120:-12:00ff", RxP2p(-120, -12, b"\x00\xff")),
    (b"OK", Status("OK")),
    (b"AT_BUSY_ERROR\r", Status("AT_BUSY_ERROR")),
    (b"+EVT:RXP2P RECEIVE TIMEOUT", Event("+EVT:RXP2P RECEIVE TIMEOUT")),
    (b"+EVT:TXP2P DONE", Event("+EVT:TXP2P DONE")),
    (b"RAKwireless RAK3172 RUI_4.0.6", Banner("RAKwireless RAK3172 RUI_4.0.6")),
    (b"Current Work Mode: LoRaWAN.", Banner("Current Work Mode: LoRaWAN.")),
    (b"65534", Value("65534")),
    (b"   ", None),
])
def test_lines_are_recognised(line: bytes, expected) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize("line, reason", [
    (b"+EVT:RXP2P:-41:9", "bad_rx_line"),
    (b"+EVT:RXP2P:-41:9:AA:BB", "bad_rx_line"),
    (b"+EVT:RXP2P:x:9:AABB", "bad_rssi"),
    (b"+EVT:RXP2P:-999:9:AABB", "bad_rssi"),
    (b"+EVT:RXP2P:--4:9:AABB", "bad_rssi"),
    (b"+EVT:RXP2P:-41:9.5:AABB", "bad_snr"),
    (b"+EVT:RXP2P:-41:99:AABB", "bad_snr"),
    (b"+EVT:RXP2P:-41:\xd9\xa3:AABB", "not_ascii"),
    (b"+EVT:RXP2P:-41:9:", "empty_frame"),
    (b"+EVT:RXP2P:-41:9:AAB", "bad_hex"),
    (b"+EVT:RXP2P:-41:9:AAZZ", "bad_hex"),
    (b"+EVT:RXP2P:-41:9:AA BB", "bad_hex"),
    (b"+EVT:RXP2P:-41:9:" + b"AB" * 256, "frame_too_long"),
    (b"X" * 601, "line_too_long"),
    (b"OK\x00", "control_chars"),
    (b"\xff\xfe", "not_ascii"),
])
def test_malformed_lines_are_typed_errors_with_a_reason(line: bytes, reason: str) -> None:
    with pytest.raises(AtLineError) as caught:
        parse_line(line)
    assert caught.value.reason == reason


_LINE_PARTS = st.sampled_from([b"+EVT:RXP2P:", b"-", b":", b"OK", b"AT_ERROR", b"+EVT:", b"RAKwireless", b"\r",
                               b"\n", b"\x00", b"\xff", b"65534", b"9", b"AB", b"Current Work Mode"])
_NOISY_BYTES = st.one_of(st.binary(max_size=700),
                         st.lists(_LINE_PARTS | st.binary(max_size=8), max_size=40).map(b"".join))


@settings(max_examples=200, deadline=None)
@given(_NOISY_BYTES)
def test_any_line_parses_or_is_a_typed_error(raw: bytes) -> None:
    try:
        parsed = parse_line(raw)
    except AtLineError as exc:
        assert exc.reason and exc.reason.islower()
        return
    assert parsed is None or isinstance(parsed, (RxP2p, Status, Event, Banner, Value))
    if isinstance(parsed, RxP2p):
        assert 1 <= len(parsed.phy) <= 255 and -200 <= parsed.rssi <= 20


@settings(max_examples=200, deadline=None)
@given(st.lists(_NOISY_BYTES, max_size=6), st.lists(st.floats(0, 100), min_size=1, max_size=6))
def test_the_core_takes_any_bytes_and_time_without_raising(chunks: list[bytes], times: list[float]) -> None:
    core = ReceiverCore(RadioSettings())
    actions = core.opened(0.0)
    for i, chunk in enumerate(chunks):
        actions += core.feed(chunk, times[i % len(times)])
        actions += core.tick(times[i % len(times)])
    assert all(isinstance(a, (SendLine, FrameHeard, LineRejected, Notice)) for a in actions)
    assert all(a.text.startswith("AT") for a in actions if isinstance(a, SendLine))
    assert all(core.counts[a.reason] > 0 for a in actions if isinstance(a, LineRejected))
    assert core.state in ("configuring", "booting", "settling", "receiving")


# --- the core against the rig's RAK3172 emulator ----------------------------------------------------------------------

class Bench:
    """The core wired to an emulated module on a virtual clock and air; `now` is the core's clock (seconds)."""

    def __init__(self, **core_options) -> None:
        self.clock = VirtualClock()
        self.air = Air(self.clock)
        self.out = bytearray()
        self.module = Rak3172("rak", self.clock, self.air, (0.0, 0.0), output=self.out.extend)
        self.core = ReceiverCore(RadioSettings(), **core_options)
        self.now = 0.0
        self.sent: list[str] = []
        self.frames: list[FrameHeard] = []
        self.notices: list[Notice] = []

    def carry_out(self, actions: list) -> None:
        """Write the core's lines to the module and feed its answers back until it is quiet."""
        while actions:
            for action in actions:
                if isinstance(action, SendLine):
                    self.sent.append(action.text)
                    self.module.receive(action.text.encode() + b"\r\n")
                elif isinstance(action, FrameHeard):
                    self.frames.append(action)
                else:
                    self.notices.append(action)
            data = bytes(self.out)
            self.out.clear()
            actions = self.core.feed(data, self.now) if data else []

    def at(self, seconds: float) -> None:
        self.now = seconds
        self.carry_out(self.core.tick(seconds))

    def node_transmits(self, phy: bytes, freq_hz: int = 868_100_000, sf: int = 7) -> None:
        """A node 300 m away sends an uplink (LoRaWAN sync word, normal IQ); virtual time runs past its end."""
        mod = Modulation(freq_hz=freq_hz, sf=sf, bw_hz=125_000, iq_inverted=False, crc=True, ldro=False)
        start = self.clock.now_us + 1000
        self.clock.call_at(start, lambda: self.air.transmit("node", (300.0, 0.0), mod, phy, 14.0))
        end = start + 2_000_000
        self.clock.call_at(end, lambda: None)
        while self.clock.now_us < end:
            self.clock.step(0.0)
        self.clock.run_due()
        data = bytes(self.out)
        self.out.clear()
        self.carry_out(self.core.feed(data, self.now))


def test_the_core_configures_the_module_for_continuous_p2p_receive_and_hands_over_what_it_hears() -> None:
    bench = Bench()
    bench.carry_out(bench.core.opened(0.0))
    assert bench.sent == SETUP and bench.core.state == "receiving"
    assert bench.module.settings.work_mode == 0 and bench.module.settings.sync_word == 0x3444
    assert bench.module.settings.p2p[:3] == (868_100_000, 7, 0)
    bench.node_transmits(PHY)
    bench.node_transmits(PHY[:-1] + b"\x00", freq_hz=868_300_000)  # another channel: not heard
    bench.node_transmits(PHY, sf=9)  # another SF: not heard
    assert [f.phy for f in bench.frames] == [PHY]
    assert bench.frames[0].rssi < 0 and bench.core.counts["frame"] == 1
    assert [n.kind for n in bench.notices] == ["configured"]


def test_after_a_reset_the_banner_brings_a_new_configuration_and_frames_come_again() -> None:
    bench = Bench()
    bench.carry_out(bench.core.opened(0.0))
    bench.module.reset()  # a power glitch: banner, factory settings, no receive
    bench.carry_out(bench.core.feed(bytes(bench.out), 1.0))
    bench.out.clear()
    assert bench.core.state == "booting" and bench.core.counts["module_reset"] == 1  # one count for both banner lines
    bench.node_transmits(PHY)
    assert bench.frames == []  # the module does not listen until configured again
    bench.at(1.0 + bench.core.boot_settle_s)
    assert bench.sent == SETUP * 2 and bench.core.state == "receiving"
    bench.node_transmits(PHY)
    assert [f.phy for f in bench.frames] == [PHY]


def test_the_probe_finds_a_receiver_stopped_without_a_banner() -> None:
    bench = Bench(probe_every_s=10.0)
    bench.carry_out(bench.core.opened(0.0))
    bench.at(10.0)
    assert bench.sent[-1] == "AT+PRECV=?" and bench.core.state == "receiving"  # answered 65534: fine
    bench.module.receive(b"AT+PRECV=0\r\n")  # someone else stops the receiver
    bench.carry_out(bench.core.feed(bytes(bench.out), 12.0))
    bench.out.clear()
    assert bench.core.counts["unexpected_reply"] == 1
    bench.at(20.0)
    assert bench.core.counts["module_reset"] == 1 and bench.sent[-len(SETUP):] == SETUP
    assert bench.module._precv == 65534
    bench.module.receive(b"AT+NWM=1\r\n")  # back in LoRaWAN mode: the probe gets AT_MODE_NO_SUPPORT
    bench.out.clear()
    bench.at(30.0)
    assert bench.core.counts["module_reset"] == 2 and bench.module.settings.work_mode == 0


def test_silence_and_refusals_are_retried() -> None:
    core = ReceiverCore(RadioSettings(), reply_timeout_s=1.0, retry_s=2.0)
    assert core.opened(0.0) == [SendLine("AT")]
    assert core.tick(0.5) == []
    assert core.tick(1.0) == [Notice("command_failed", "no answer to AT"), SendLine("AT")]
    assert core.feed(b"OK\r\n", 1.1) == [SendLine("AT+NWM=0")]
    assert core.feed(b"AT_BUSY_ERROR\r\n", 1.2) == [Notice("command_failed", "AT+NWM=0 answered AT_BUSY_ERROR")]
    assert core.state == "settling" and core.next_deadline() == pytest.approx(3.2)
    assert core.tick(3.2) == [SendLine("AT")]
    assert core.counts["no_reply"] == 1 and core.counts["command_failed"] == 1
    # frames heard while configuring still count; garbage is counted by reason and changes nothing
    actions = core.feed(b"+EVT:RXP2P:-50:5:" + PHY.hex().encode() + b"\r\n\xff\xfe\r\n+EVT:RXP2P:-50:5:ABC\r\n", 3.3)
    assert [type(a) for a in actions] == [FrameHeard, LineRejected, LineRejected] and core.state == "configuring"
    assert actions[0] == FrameHeard(PHY, -50, 5) and [a.reason for a in actions[1:]] == ["not_ascii", "bad_hex"]
    assert core.counts["not_ascii"] == 1 and core.counts["bad_hex"] == 1
    assert core.feed(b"A" * 5000 + b"\r\nOK\r\n", 3.4)[1:] == [SendLine("AT+NWM=0")]
    assert core.counts["line_too_long"] == 1


def test_a_module_that_reboots_after_the_work_mode_change_is_configured_on_the_second_pass() -> None:
    """RUI3 answers AT+NWM=0 with OK and then reboots when the mode changes; the command sent meanwhile is lost."""
    core = ReceiverCore(RadioSettings(), reply_timeout_s=1.0)
    core.opened(0.0)
    assert core.feed(b"OK\r\n", 0.1) == [SendLine("AT+NWM=0")]
    assert core.feed(b"OK\r\n", 0.2) == [SendLine("AT+PRECV=0")]
    [notice] = core.feed(b"RAKwireless RAK3172-E\r\nVersion: RUI_4.0.6\r\nCurrent Work Mode: LoRa P2P.\r\n", 0.3)
    assert notice.kind == "module_reset" and core.state == "booting"
    assert core.tick(0.3 + core.boot_settle_s) == [SendLine("AT")]
    sent = []
    for i in range(len(SETUP)):
        sent += [a.text for a in core.feed(b"OK\r\n", 1.0 + i / 10) if isinstance(a, SendLine)]
    assert ["AT"] + sent == SETUP and core.state == "receiving"
    assert core.counts["module_reset"] == 1 and core.counts["configured"] == 1 and core.counts["unexpected_line"] == 0


def test_radio_settings_and_config_keys_are_checked(tmp_path: Path) -> None:
    assert RadioSettings(869_525_000, 12, 125).p2p_command() == "AT+P2P=869525000:12:0:0:8:14"
    assert RadioSettings(bw_khz=500).p2p_command().split(":")[2] == "2"
    with pytest.raises(ValueError, match="bandwidth 300"):
        AgentConfig(registry=tmp_path / "r", rak3172_bw_khz=300)
    with pytest.raises(ConfigError, match=r"rak3172.sf: 13 is outside 7..12"):
        parse_config("registry = 'r'\n[rak3172]\nsf = 13\n")
    values, _ = parse_config("registry = 'r'\n[rak3172]\nport = '/dev/ttyUSB1'\nfrequency_hz = 868300000\n",
                             base=tmp_path)
    config = AgentConfig(**values)
    assert (config.rak3172_port, config.rak3172_radio().frequency_hz) == ("/dev/ttyUSB1", 868_300_000)
    assert default_gateway_id("/dev/ttyUSB1") == "rak3172-ttyUSB1"


# --- the asyncio edge on a real pty -----------------------------------------------------------------------------------

async def _wait_until(predicate, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_the_edge_opens_a_port_that_appears_late_and_reopens_one_that_went_away(tmp_path: Path) -> None:
    link = tmp_path / "ttyRAK0"
    counters = Counters()
    received: list[tuple[bytes, Reception, float]] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        clock = VirtualClock()
        module = Rak3172("rak", clock, Air(clock))
        receiver = RakInput(str(link), RadioSettings(868_500_000, 9, 125), lambda *args: received.append(args),
                            counters=counters, clock=lambda: 1_800_000_000.0, reopen_s=0.1)
        await receiver.start()
        try:
            await asyncio.sleep(0.3)
            assert receiver.opens == 0  # no port yet: the input waits for it
            pty = PtyLink(module, link, loop)
            await _wait_until(lambda: receiver.core.state == "receiving")
            assert module.settings.work_mode == 0 and module._precv == 65534 and receiver.opens == 1
            # what the module prints reaches the session layer's handler, or the counters when it is garbage
            pty.write(b"+EVT:RXP2P:-97:-3:" + PHY.hex().encode() + b"\r\n+EVT:RXP2P:-97:-3:ABC\r\n")
            await _wait_until(lambda: received and counters.frames["rak3172_bad_hex"] == 1)
            pty.close()  # the device goes away (USB unplugged)
            await _wait_until(lambda: receiver.core.state == "closed")
            module.reset()
            pty = PtyLink(module, link, loop)  # and comes back
            await _wait_until(lambda: receiver.opens == 2 and receiver.core.state == "receiving")
            assert module._precv == 65534 and receiver.counts["configured"] == 2
            pty.close()
        finally:
            await receiver.stop()

    asyncio.run(scenario())
    [(phy, reception, now)] = received
    assert phy == PHY and now == 1_800_000_000.0
    assert dataclasses.astuple(reception)[2:7] == (868_500_000, 9, 125_000, -97, -3)
    assert reception.gateway_eui == "rak3172-ttyRAK0" and reception.can_transmit is False
    assert 0 <= reception.tmst < 2**32 and reception.time.startswith("2027-01-15T08:00:00")
    assert counters.gateways == {"rak3172-ttyRAK0": reception.time}


def test_the_fuzz_target_runs_briefly_with_only_counted_outcomes() -> None:
    """bench/fuzz's `rak_receiver_lines` target, a few hundred cases (the campaign runs >= 100,000)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench" / "fuzz"))
    from fuzz_targets import Target, check_receiver_line, receiver_case, run_target

    outcomes = run_target(Target("rak_receiver_lines", receiver_case(), check_receiver_line), 300)
    assert sum(outcomes.values()) >= 300
    assert outcomes["frame"] > 0 and outcomes["not_ascii"] + outcomes["bad_rx_line"] > 0
