"""The emulated gateway's packet forwarder against a plain UDP socket standing in for the agent, with a real micropython
board on the air: PUSH_DATA of an uplink, a PULL_RESP transmitted at its tmst and heard by the board, TX_ACK errors, and
the hold that keeps virtual time before RX1 until the agent answered, and the grace that learns how fast the agent answers."""
from __future__ import annotations

import base64
import re
import socket
import time

import pytest
from hypothesis import given, settings, strategies as st

from dos_codecs.gwmp import Datagram, GwmpKind, Txpk, build_datagram, parse_datagram, parse_rxpk, txpk_to_json
from dos_rig.airtime import time_on_air_us
from dos_rig.forwarder import AnswerGrace
from dos_rig.probe import install_probe
from dos_rig.rig import Rig

pytestmark = pytest.mark.hil

EUI = "0016C001FF10A235"
UPLINK = b"\x40\x01\x02\x03\x04\x00\x01\x00\x01hello\x0a\x0b\x0c\x0d"
DOWNLINK = b"\x60\x01\x02\x03\x04\x20\x00\x00\xde\xad\xbe\xef"
BOARD_SCRIPT = (
    "setup(sf=7)\n"
    "time.sleep_ms(100)\n"
    "transmit(%r)\n"
    "setup(sf=7, iq_rx=True)\n"
    "print('DOWN', repr(receive(3000)))\n" % UPLINK)


class Agent:
    """A plain UDP socket playing the agent."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = self.sock.getsockname()

    def receive(self, kind: GwmpKind, timeout_s: float = 10.0) -> tuple[Datagram, tuple]:
        deadline = time.monotonic() + timeout_s
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data, source = self.sock.recvfrom(65536)
            datagram = parse_datagram(data)
            if datagram.kind == kind:
                return datagram, source

    def send(self, datagram: Datagram, to: tuple) -> None:
        self.sock.sendto(build_datagram(datagram), to)

    def pull_resp(self, txpk: Txpk, to: tuple, token: bytes = b"\x12\x34") -> str:
        """Send a PULL_RESP and return the TX_ACK's error."""
        self.send(Datagram(2, token, GwmpKind.PULL_RESP, None, txpk_to_json(txpk)), to)
        ack, _ = self.receive(GwmpKind.TX_ACK)
        assert ack.token == token and ack.gateway_eui == bytes.fromhex(EUI)
        return ack.payload["txpk_ack"]["error"]


def downlink(tmst: int | None, imme: bool = False) -> Txpk:
    return Txpk(freq=868.1, rfch=0, powe=14, sf=7, bw_khz=125, codr="4/5", ipol=True, data=DOWNLINK, tmst=tmst,
                imme=imme, ncrc=True)


@pytest.fixture
def agent():
    agent = Agent()
    yield agent
    agent.sock.close()


def test_uplink_as_push_data_and_pull_resp_heard_by_the_board_at_its_tmst(tmp_path, agent):
    with Rig(tmp_path / "rig", agent_addr=agent.address, hold_grace_s=3.0) as rig:
        gateway = rig.add_gateway(EUI, (0, 0))
        pull, gateway_addr = agent.receive(GwmpKind.PULL_DATA)
        assert pull.gateway_eui == bytes.fromhex(EUI)
        agent.send(Datagram(2, pull.token, GwmpKind.PULL_ACK), gateway_addr)
        board = rig.add_board("node", install_probe(tmp_path / "node", BOARD_SCRIPT), (300, 40))
        push, _ = agent.receive(GwmpKind.PUSH_DATA)
        agent.send(Datagram(2, push.token, GwmpKind.PUSH_ACK), gateway_addr)
        (rx,) = [parse_rxpk(obj) for obj in push.payload["rxpk"]]
        uplink_end = 100_000 + 7_000 + time_on_air_us(len(UPLINK), 7, 125_000, 1)  # after setup's 7 ms reset
        assert rx.tmst == uplink_end & 0xFFFFFFFF
        assert rx.data == UPLINK and base64.b64decode(push.payload["rxpk"][0]["data"]) == UPLINK
        assert (rx.freq, rx.chan, rx.rfch, rx.stat, rx.datr, rx.codr) == (868.1, 0, 1, 1, "SF7BW125", "4/5")
        assert rx.time == "2026-01-01T00:00:00.%06dZ" % uplink_end
        logged = [e for e in rig.air_log() if e["receiver"] == EUI][0]
        assert rx.rssi == round(logged["rssi"]) and rx.lsnr == logged["snr"]
        assert rig.now_us() <= uplink_end + 1_000_000  # held before RX1 while the agent has not answered
        assert agent.pull_resp(downlink(rx.tmst + 1_000_000), gateway_addr) == "NONE"
        pattern = re.compile(r"DOWN \(b'(.*)', (-?[\d.]+), (-?[\d.]+), (\w+)\)")
        match = rig.run_until(lambda: pattern.search(board.console), 10)
        assert match.group(1).encode().decode("unicode_escape").encode("latin-1") == DOWNLINK
        assert match.group(4) == "False"
        sent = [e for e in rig.air_log() if e["sender"] == EUI][0]
        assert sent["receiver"] == "node" and sent["result"] == "ok"
        assert sent["t_us"] == uplink_end + 1_000_000 + time_on_air_us(len(DOWNLINK), 7, 125_000, 1, crc=False)
        rig.run_until(lambda: gateway.counters.get("push_ack") == 1 and gateway.counters.get("pull_ack") == 1, 5)
        assert gateway.counters["tx_sent"] == 1


def test_tx_ack_too_late_and_too_early(tmp_path, agent):
    with Rig(tmp_path / "rig", agent_addr=agent.address) as rig:
        rig.add_gateway(EUI, (0, 0))
        _, gateway_addr = agent.receive(GwmpKind.PULL_DATA)
        rig.run_until(2_000_000, 5)
        now = rig.now_us()
        assert agent.pull_resp(downlink(now - 500_000), gateway_addr) == "TOO_LATE"
        assert agent.pull_resp(downlink((now + 60_000_000) & 0xFFFFFFFF), gateway_addr) == "TOO_EARLY"
        assert agent.pull_resp(downlink(None, imme=True), gateway_addr) == "NONE"
        counters = rig.counters()["gateways"][EUI]
        assert (counters["tx_too_late"], counters["tx_too_early"], counters["tx_none"]) == (1, 1, 1)
        sent = [e for e in rig.air_log() if e["sender"] == EUI]
        assert sent == []  # nobody listens, so nothing is logged, but the transmission happened
        rig.run_until(lambda: rig.counters()["gateways"][EUI].get("tx_sent") == 1, 5)


def test_an_unanswered_uplink_holds_the_clock_only_for_the_grace(tmp_path, agent):
    with Rig(tmp_path / "rig", agent_addr=agent.address, hold_grace_s=0.6) as rig:
        rig.add_gateway(EUI, (0, 0))
        rig.add_board("node", install_probe(tmp_path / "node", (
            "setup(sf=7)\ntransmit(b'@up')\ntime.sleep(30)\nprint('DONE')\n")), (100, 0))
        push, _ = agent.receive(GwmpKind.PUSH_DATA)
        received_at = time.monotonic()
        rx1 = parse_rxpk(push.payload["rxpk"][0]).tmst + 1_000_000
        time.sleep(0.3)
        assert rig.now_us() == rx1  # held exactly at RX1
        rig.run_until(lambda: rig.now_us() > rx1, 5)
        assert time.monotonic() - received_at >= 0.55
        assert rig.counters()["holds_expired"] == 1


def test_answer_grace_is_the_ceiling_until_it_has_seen_answers_then_floor_plus_margin_times_p95():
    grace = AnswerGrace(0.5, floor_s=0.02, margin=4.0, min_extra_s=0.01, min_samples=5)
    for _ in range(4):
        grace.record(0.025)
        assert grace.grace_s == 0.5
    grace.record(0.025)
    assert grace.grace_s == pytest.approx(0.02 + 4 * 0.005)
    grace.record(0.02)  # no later than the floor: the least extra still applies
    assert grace.grace_s == pytest.approx(0.02 + 4 * 0.005)
    for _ in range(3):
        grace.record(0.4)  # a loaded agent: late answers widen the grace up to the ceiling
    assert grace.grace_s == 0.5


@settings(max_examples=200, deadline=None)
@given(st.floats(0.05, 5.0), st.floats(0.0, 0.3), st.lists(st.floats(0.0, 10.0), max_size=80))
def test_answer_grace_stays_between_floor_plus_least_extra_and_the_ceiling(ceiling, floor, latencies):
    grace = AnswerGrace(ceiling, floor_s=floor, min_extra_s=0.02)
    for latency in latencies:
        grace.record(latency)
    assert min(ceiling, floor + 0.02) <= grace.grace_s <= ceiling
    if len(latencies) < grace.min_samples:
        assert grace.grace_s == ceiling
    else:  # never shorter than margin x the fastest answer's time beyond the floor, capped at the ceiling
        assert grace.grace_s >= min(ceiling, floor + 4 * max(0.0, min(latencies[-64:]) - floor)) - 1e-9


def test_answer_grace_rejects_nonsense():
    with pytest.raises(ValueError):
        AnswerGrace(0.0)
    with pytest.raises(ValueError):
        AnswerGrace(0.5, margin=0.5)


def test_a_fast_agent_shortens_the_hold_of_an_unanswered_uplink(tmp_path, agent):
    """After answering five uplinks within ~20 ms, an unanswered sixth holds the clock far shorter than the ceiling."""
    with Rig(tmp_path / "rig", agent_addr=agent.address, hold_grace_s=3.0) as rig:
        gateway = rig.add_gateway(EUI, (0, 0))
        _, gateway_addr = agent.receive(GwmpKind.PULL_DATA)
        rig.add_board("node", install_probe(tmp_path / "node", (
            "setup(sf=7)\nfor i in range(7):\n    transmit(b'@up')\n    time.sleep(10)\nprint('DONE')\n")), (100, 0))
        for _ in range(5):
            push, _ = agent.receive(GwmpKind.PUSH_DATA)
            tmst = parse_rxpk(push.payload["rxpk"][0]).tmst
            assert agent.pull_resp(downlink((tmst + 1_000_000) & 0xFFFFFFFF), gateway_addr) == "NONE"
        assert gateway.answer_grace.samples == 5
        learned = gateway.answer_grace.grace_s
        assert learned < 1.0  # a loopback answer takes milliseconds, even on a loaded machine
        push, _ = agent.receive(GwmpKind.PUSH_DATA)
        received_at = time.monotonic()
        rx1 = parse_rxpk(push.payload["rxpk"][0]).tmst + 1_000_000
        rig.run_until(lambda: rig.now_us() > rx1, 5)
        assert time.monotonic() - received_at < 1.5  # not the 3 s ceiling
        assert rig.counters()["holds_expired"] == 1
        push, _ = agent.receive(GwmpKind.PUSH_DATA)
        tmst = parse_rxpk(push.payload["rxpk"][0]).tmst
        agent.pull_resp(downlink((tmst + 3_000_000) & 0xFFFFFFFF), gateway_addr)  # neither its RX1 nor its RX2
        assert gateway.answer_grace.samples == 5  # so no answer's latency was learned from it
