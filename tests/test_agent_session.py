"""The sans-IO session layer: 32-bit FCnt rebuild (properties), the published uplink vector, replay, gap, MIC failure,
DevAddr collisions, and structural rejections with the codecs' reasons."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dos_agent.registry import Registry
from dos_agent.session import (
    FCNT_MAX,
    MAX_FCNT_GAP,
    JoinRejected,
    Reception,
    SessionLayer,
    UplinkAccepted,
    UplinkRejected,
    forward_fcnt,
    next_fcnt,
    previous_fcnt,
)
from dos_codecs.crypto import SessionKeys, derive_session_keys, open_join_accept, seal_join_request
from dos_codecs.lorawan import DataFrame, JoinRequest, MType, parse_data_frame

RECEPTION = Reception(gateway_eui="aa555a0000000101", tmst=1, freq=868_100_000, sf=7, bw=125_000, rssi=-80, snr=7.0)
NOW = 1_795_000_000.0
# Published vector (lorawan.md): DevAddr 49be7df1, FCnt 2, FPort 1, "test".
VECTOR_PHY = bytes.fromhex("40F17DBE4900020001954378762B11FF0D")
VECTOR_DEVICE = {
    "dev_eui": "0000000000000001", "asset_id": "vector", "kind": "streetlight", "activation": "abp",
    "dev_addr": "49be7df1", "nwk_s_key": "44024241ed4ce9a68c6a8bc055233fd3", "app_s_key": "ec925802ae430ca77fd3dd73cb2cc588",
}
last_counters = st.integers(min_value=0, max_value=FCNT_MAX)


def reception(gateway: str = "aa555a0000000101", tmst: int = 1_000_000, snr: float = 7.0, rssi: float = -80,
              sf: int = 7, freq: int = 868_100_000, can_transmit: bool = True) -> Reception:
    """A reception as a Semtech forwarder reports it (125 kHz)."""
    return Reception(gateway_eui=gateway, tmst=tmst, freq=freq, sf=sf, bw=125_000, rssi=rssi, snr=snr,
                     can_transmit=can_transmit)


@dataclass
class LoRaNode:
    """An end device's side of a session, built on the codecs: seals uplinks, opens downlinks (for tests of the
    network side; the firmware has its own MAC)."""

    dev_addr: int
    nwk_s_key: bytes
    app_s_key: bytes
    fcnt: int = 0

    @classmethod
    def from_entry(cls, entry: dict) -> LoRaNode:
        return cls(int(entry["dev_addr"], 16), bytes.fromhex(entry["nwk_s_key"]), bytes.fromhex(entry["app_s_key"]))

    @classmethod
    def from_join_accept(cls, phy: bytes, app_key: bytes, dev_nonce: int) -> LoRaNode:
        accept = open_join_accept(phy, app_key)
        nwk, app = derive_session_keys(app_key, accept.join_nonce, accept.net_id, dev_nonce)
        return cls(accept.dev_addr, nwk, app)

    @property
    def keys(self) -> SessionKeys:
        return SessionKeys(self.nwk_s_key, self.app_s_key)

    def uplink(self, payload: bytes = b"\xa1\x01\xf5", fport: int | None = 1, confirmed: bool = False,
               ack: bool = False, fopts: bytes = b"", fcnt: int | None = None, adr: bool = False) -> bytes:
        """The next uplink (or one with the given FCnt, leaving the node's counter alone)."""
        if fcnt is None:
            fcnt, self.fcnt = self.fcnt, self.fcnt + 1
        frame = DataFrame(mtype=MType.CONFIRMED_UP if confirmed else MType.UNCONFIRMED_UP, dev_addr=self.dev_addr,
                          fcnt16=fcnt & 0xFFFF, adr=adr, ack=ack, fopts=fopts, fport=fport,
                          frm_payload=payload if fport is not None else b"")
        return self.keys.seal(frame, fcnt)

    def open_downlink(self, phy: bytes, fcnt_down: int) -> tuple[DataFrame, bytes]:
        """(frame, plaintext FRMPayload) of a downlink sealed with `fcnt_down`; FrameError on a bad MIC."""
        frame = parse_data_frame(phy)
        assert not frame.uplink and frame.dev_addr == self.dev_addr
        return frame, self.keys.open(frame, fcnt_down)


# --- FCnt rebuild -----------------------------------------------------------------------------------------------------


@settings(max_examples=200)
@given(last=last_counters, step=st.integers(min_value=1, max_value=MAX_FCNT_GAP))
def test_a_counter_within_the_gap_is_rebuilt_exactly(last: int, step: int) -> None:
    expected = last + step
    rebuilt = next_fcnt(last, expected & 0xFFFF)
    assert rebuilt == (expected if expected <= FCNT_MAX else None)


@settings(max_examples=200)
@given(last=last_counters, step=st.integers(min_value=MAX_FCNT_GAP + 1, max_value=0x10000))
def test_a_counter_past_the_gap_or_not_ahead_is_refused(last: int, step: int) -> None:
    # step 0x10000 is the same low 16 bits as `last`: a duplicate
    assert next_fcnt(last, (last + step) & 0xFFFF) is None


@settings(max_examples=200)
@given(last=last_counters, fcnt16=st.integers(min_value=0, max_value=0xFFFF))
def test_rebuilt_counters_match_their_low_bits_and_bracket_last(last: int, fcnt16: int) -> None:
    ahead = forward_fcnt(last, fcnt16)
    behind = previous_fcnt(last, fcnt16)
    if ahead is not None:
        assert ahead & 0xFFFF == fcnt16 and last < ahead <= last + 0x10000
    if behind is not None:
        assert behind & 0xFFFF == fcnt16 and last - 0x10000 < behind <= last
    rebuilt = next_fcnt(last, fcnt16)
    assert rebuilt is None or rebuilt == ahead


def test_the_16_bit_wrap() -> None:
    assert next_fcnt(0xFFFF, 0x0000) == 0x10000
    assert next_fcnt(0x1FFF0, 0x0005) == 0x20005
    assert next_fcnt(0x2FFFF, 0xFFFF) is None  # duplicate of the last one
    assert previous_fcnt(0x20005, 0xFFF0) == 0x1FFF0
    assert next_fcnt(None, 0xABCD) == 0xABCD  # first uplink of a session


# --- the session layer on a real registry -----------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path):
    with Registry(tmp_path / "reg.sqlite") as reg:
        yield reg


def device(dev_eui: str, dev_addr: str = "26011f01", nwk: str = "11" * 16, app: str = "22" * 16) -> dict:
    return {
        "dev_eui": dev_eui, "asset_id": f"asset-{dev_eui[-4:]}", "kind": "waste", "activation": "abp",
        "dev_addr": dev_addr, "nwk_s_key": nwk, "app_s_key": app,
    }


def uplink(entry: dict, fcnt: int, payload: bytes = b"\xa1\x01\x18\x2a", fport: int | None = 1,
           mtype: MType = MType.UNCONFIRMED_UP) -> bytes:
    frame = DataFrame(mtype=mtype, dev_addr=int(entry["dev_addr"], 16), fcnt16=fcnt & 0xFFFF, fport=fport,
                      frm_payload=payload if fport is not None else b"")
    return SessionKeys(bytes.fromhex(entry["nwk_s_key"]), bytes.fromhex(entry["app_s_key"])).seal(frame, fcnt)


def only(outputs: list) -> UplinkAccepted | UplinkRejected:
    """The one frame outcome among a frame's outputs (downlinks and MAC events may follow it)."""
    outcomes = [o for o in outputs if isinstance(o, (UplinkAccepted, UplinkRejected))]
    assert len(outcomes) == 1, outputs
    assert outputs[0] is outcomes[0]  # the outcome comes first
    return outcomes[0]


def test_the_published_vector_is_accepted_and_decrypted(registry: Registry) -> None:
    registry.import_devices([VECTOR_DEVICE])
    event = only(SessionLayer(registry).handle_uplink(VECTOR_PHY, RECEPTION, NOW))
    assert isinstance(event, UplinkAccepted)
    assert (event.payload, event.fcnt, event.fport, event.confirmed) == (b"test", 2, 1, False)
    assert (event.reception, event.received_at) == (RECEPTION, NOW)
    assert event.device.fcnt_up == 2
    assert registry.get("0000000000000001").fcnt_up == 2


def test_counters_go_on_across_the_16_bit_wrap_and_are_stored(registry: Registry, tmp_path: Path) -> None:
    entry = device("70b3d57ed0000001")
    registry.import_devices([entry])
    session = SessionLayer(registry)
    for fcnt in (0xFFFE, 0xFFFF, 0x10000, 0x10001):
        event = only(session.handle_uplink(uplink(entry, fcnt), RECEPTION, NOW))
        assert isinstance(event, UplinkAccepted) and event.fcnt == fcnt
    registry.flush()
    with Registry(tmp_path / "reg.sqlite") as reopened:
        assert reopened.get("70b3d57ed0000001").fcnt_up == 0x10001


def test_replays_and_duplicates_are_rejected(registry: Registry) -> None:
    entry = device("70b3d57ed0000001")
    registry.import_devices([entry])
    session = SessionLayer(registry)
    old, last = uplink(entry, 10), uplink(entry, 11)
    assert isinstance(only(session.handle_uplink(old, RECEPTION, NOW)), UplinkAccepted)
    assert isinstance(only(session.handle_uplink(last, RECEPTION, NOW)), UplinkAccepted)
    for phy in (last, old):
        event = only(session.handle_uplink(phy, RECEPTION, NOW))
        assert isinstance(event, UplinkRejected)
        assert (event.reason, event.dev_eui, event.dev_addr) == ("fcnt_replay", "70b3d57ed0000001", "26011f01")
    assert registry.get("70b3d57ed0000001").fcnt_up == 11


def test_a_jump_past_the_gap_is_rejected_with_its_own_reason(registry: Registry) -> None:
    entry = device("70b3d57ed0000001")
    registry.import_devices([entry])
    session = SessionLayer(registry)
    only(session.handle_uplink(uplink(entry, 100), RECEPTION, NOW))
    event = only(session.handle_uplink(uplink(entry, 100 + MAX_FCNT_GAP + 1), RECEPTION, NOW))
    assert isinstance(event, UplinkRejected) and event.reason == "fcnt_gap"
    event = only(session.handle_uplink(uplink(entry, 100 + MAX_FCNT_GAP), RECEPTION, NOW))
    assert isinstance(event, UplinkAccepted) and event.fcnt == 100 + MAX_FCNT_GAP


def test_a_bad_mic_is_rejected_and_changes_nothing(registry: Registry) -> None:
    entry = device("70b3d57ed0000001")
    registry.import_devices([entry])
    session = SessionLayer(registry)
    forged = uplink(dict(entry, nwk_s_key="33" * 16), 5)
    event = only(session.handle_uplink(forged, RECEPTION, NOW))
    assert isinstance(event, UplinkRejected) and event.reason == "mic_failed"
    assert "11" * 16 not in event.detail
    assert registry.get("70b3d57ed0000001").fcnt_up is None
    assert isinstance(only(session.handle_uplink(uplink(entry, 5), RECEPTION, NOW)), UplinkAccepted)


def test_colliding_dev_addrs_are_told_apart_by_the_mic(registry: Registry) -> None:
    first, second = device("70b3d57ed0000001"), device("70b3d57ed0000002", nwk="44" * 16, app="55" * 16)
    registry.import_devices([first, second])
    session = SessionLayer(registry)
    for entry, fcnt in ((second, 7), (first, 3), (second, 8)):
        event = only(session.handle_uplink(uplink(entry, fcnt, payload=b"\xa1\x01\x05"), RECEPTION, NOW))
        assert isinstance(event, UplinkAccepted)
        assert (event.device.dev_eui, event.fcnt, event.payload) == (entry["dev_eui"], fcnt, b"\xa1\x01\x05")
    assert registry.get(first["dev_eui"]).fcnt_up == 3 and registry.get(second["dev_eui"]).fcnt_up == 8


def test_a_confirmed_uplink_without_fport_is_accepted(registry: Registry) -> None:
    entry = device("70b3d57ed0000001")
    registry.import_devices([entry])
    event = only(SessionLayer(registry).handle_uplink(
        uplink(entry, 1, fport=None, mtype=MType.CONFIRMED_UP), RECEPTION, NOW))
    assert isinstance(event, UplinkAccepted)
    assert (event.fport, event.payload, event.confirmed) == (None, b"", True)


@pytest.mark.parametrize(
    ("phy", "reason"),
    [
        (b"", "too_short"),
        (b"\x40\x01\x02", "too_short"),
        (bytes.fromhex("41F17DBE4900020001954378762B11FF0D"), "bad_major"),
        (bytes.fromhex("E0F17DBE4900020001954378762B11FF0D"), "proprietary"),
        (bytes.fromhex("40F17DBE490F020001954378762B11FF0D"), "fopts_past_end"),
        (bytes.fromhex("60F17DBE4900020001954378762B11FF0D"), "not_uplink"),
        (bytes.fromhex("4001020304000100016162"), "too_short"),
        (bytes.fromhex("400102030400010001616263"), "unknown_dev_addr"),
        (bytes.fromhex("40F17DBE490002000195437876") + bytes(243), "too_long"),  # 256 bytes
        (bytes.fromhex("40F17DBE4901020006000195437876"), "fport0_with_fopts"),
        (bytes.fromhex("C0F17DBE4900020001954378762B11FF0D"), "unknown_mtype"),
    ],
)
def test_structural_rejections_carry_the_codecs_reasons(registry: Registry, phy: bytes, reason: str) -> None:
    registry.import_devices([VECTOR_DEVICE])
    event = only(SessionLayer(registry).handle_uplink(phy, RECEPTION, NOW))
    assert isinstance(event, UplinkRejected) and event.reason == reason


def test_a_join_request_of_an_unknown_device_is_refused(registry: Registry) -> None:
    request = JoinRequest(join_eui=bytes(8), dev_eui=bytes.fromhex("70b3d57ed0000009"), dev_nonce=1)
    outputs = SessionLayer(registry).handle_uplink(seal_join_request(request, b"\x01" * 16), RECEPTION, NOW)
    assert len(outputs) == 1 and isinstance(outputs[0], JoinRejected)
    assert (outputs[0].reason, outputs[0].dev_eui, outputs[0].device) == ("unknown_dev_eui", "70b3d57ed0000009", None)


@pytest.fixture(scope="module")
def vector_session(tmp_path_factory: pytest.TempPathFactory):
    with Registry(tmp_path_factory.mktemp("session") / "reg.sqlite") as reg:
        reg.import_devices([VECTOR_DEVICE])
        yield SessionLayer(reg)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64), mhdr=st.sampled_from([0x00, 0x40, 0x80, 0x60, 0x20, 0xE0, 0x41]))
def test_any_bytes_give_exactly_one_event(vector_session: SessionLayer, data: bytes, mhdr: int) -> None:
    outputs = vector_session.handle_uplink(bytes([mhdr]) + data, RECEPTION, NOW)
    assert len(outputs) == 1
    assert isinstance(outputs[0], (UplinkRejected, JoinRejected)) and outputs[0].reason
