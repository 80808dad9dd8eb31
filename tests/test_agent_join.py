"""The OTAA join server through the sans-IO session layer on a real registry: a JoinAccept that decrypts (codecs) to
the session the agent then accepts uplinks for, its timing and CFList, DevNonce reuse and the other refusals, DevAddr
allocation inside the NetID's block, and a session that survives reopening the registry and re-importing the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from dos_agent.join import JoinGranted, JoinRefused, JoinServer, dev_addr_block
from dos_agent.registry import Registry
from dos_agent.session import JoinAccepted, JoinRejected, SessionLayer, Transmit, UplinkAccepted
from dos_codecs.crypto import derive_session_keys, open_join_accept, seal_join_request
from dos_codecs.lorawan import JoinRequest, parse_join_request
from test_agent_session import LoRaNode, reception

APP_KEY = bytes.fromhex("98929b92c49edba9676d646d3b612456")
JOIN_EUI = "70b3d57ed0000000"
OTAA = {
    "dev_eui": "70b3d57ed0000a01", "asset_id": "bin-dortmund-0001", "kind": "waste", "activation": "otaa",
    "app_key": APP_KEY.hex(), "join_eui": JOIN_EUI,
}
NOW = 1_795_000_000.0


def join_request(dev_nonce: int, entry: dict = OTAA, app_key: bytes = APP_KEY, join_eui: str | None = None) -> bytes:
    request = JoinRequest(join_eui=bytes.fromhex(join_eui or entry["join_eui"]),
                          dev_eui=bytes.fromhex(entry["dev_eui"]), dev_nonce=dev_nonce)
    return seal_join_request(request, app_key)


@pytest.fixture
def registry(tmp_path: Path):
    with Registry(tmp_path / "reg.sqlite") as reg:
        reg.import_devices([OTAA])
        yield reg


def test_a_join_gives_a_join_accept_that_decrypts_to_the_stored_session(registry: Registry) -> None:
    session = SessionLayer(registry)
    heard = reception(tmst=4_000_000_000, sf=9, freq=868_300_000)
    outputs = session.handle_uplink(join_request(7), heard, NOW)
    assert [type(o) for o in outputs] == [JoinAccepted, Transmit]
    joined, transmit = outputs
    device = registry.get(OTAA["dev_eui"])
    assert joined.device == device and joined.dev_nonce == 7
    assert (device.last_dev_nonce, device.join_nonce, device.fcnt_up, device.fcnt_down) == (7, 1, None, 0)

    txpk = transmit.txpk
    assert transmit.gateway_eui == heard.gateway_eui
    assert txpk.tmst == (4_000_000_000 + 5_000_000) & 0xFFFFFFFF  # JOIN_ACCEPT_DELAY1, wrapping at 2^32
    assert (txpk.freq, txpk.sf, txpk.bw_khz, txpk.ipol, txpk.powe, txpk.codr, txpk.ncrc) == (
        868.3, 9, 125, True, 14, "4/5", True)
    accept = open_join_accept(txpk.data, APP_KEY)
    assert (accept.join_nonce, accept.net_id, f"{accept.dev_addr:08x}") == (1, 0, device.dev_addr)
    assert (accept.rx1_dr_offset, accept.rx2_data_rate, accept.rx_delay) == (0, 0, 1)
    cf_list = accept.cf_list
    assert [int.from_bytes(cf_list[i:i + 3], "little") * 100 for i in range(0, 15, 3)] == [
        867_100_000, 867_300_000, 867_500_000, 867_700_000, 867_900_000]
    assert cf_list[15] == 0
    nwk, app = derive_session_keys(APP_KEY, 1, 0, 7)
    assert (device.nwk_s_key, device.app_s_key) == (nwk.hex(), app.hex())

    node = LoRaNode.from_join_accept(txpk.data, APP_KEY, 7)
    accepted = session.handle_uplink(node.uplink(b"\xa1\x01\x18\x2a"), heard, NOW + 10)[0]
    assert isinstance(accepted, UplinkAccepted)
    assert (accepted.device.dev_eui, accepted.fcnt, accepted.payload) == (OTAA["dev_eui"], 0, b"\xa1\x01\x18\x2a")


def test_a_reused_or_lower_dev_nonce_is_refused_with_the_last_one_seen(registry: Registry) -> None:
    session = SessionLayer(registry)
    assert isinstance(session.handle_uplink(join_request(10), reception(), NOW)[0], JoinAccepted)
    first_session = registry.get(OTAA["dev_eui"]).session_id
    for nonce in (10, 3):
        outputs = session.handle_uplink(join_request(nonce), reception(), NOW + 20)
        assert len(outputs) == 1 and isinstance(outputs[0], JoinRejected)
        refused = outputs[0]
        assert (refused.reason, refused.dev_nonce, refused.last_dev_nonce) == ("dev_nonce_reused", nonce, 10)
        assert refused.device.dev_eui == OTAA["dev_eui"]
    assert registry.get(OTAA["dev_eui"]).session_id == first_session  # the session stays
    again = session.handle_uplink(join_request(11), reception(), NOW + 40)[0]
    assert isinstance(again, JoinAccepted) and again.device.join_nonce == 2
    assert again.device.session_id != first_session


@pytest.mark.parametrize(
    ("request_phy", "reason"),
    [
        (join_request(1, app_key=bytes(16)), "mic_failed"),
        (join_request(1, join_eui="0000000000000001"), "join_eui_mismatch"),
    ],
)
def test_a_join_request_that_does_not_verify_is_refused(registry: Registry, request_phy: bytes, reason: str) -> None:
    outputs = SessionLayer(registry).handle_uplink(request_phy, reception(), NOW)
    assert len(outputs) == 1 and isinstance(outputs[0], JoinRejected) and outputs[0].reason == reason
    device = registry.get(OTAA["dev_eui"])
    assert device.dev_addr is None and device.last_dev_nonce is None


def test_an_abp_device_cannot_join(tmp_path: Path) -> None:
    abp = {"dev_eui": "70b3d57ed0000a02", "asset_id": "lamp-2", "kind": "streetlight", "activation": "abp",
           "dev_addr": "26011f02", "nwk_s_key": "11" * 16, "app_s_key": "22" * 16}
    with Registry(tmp_path / "reg.sqlite") as registry:
        registry.import_devices([abp])
        outputs = SessionLayer(registry).handle_uplink(join_request(1, dict(abp, join_eui=JOIN_EUI)), reception(), NOW)
    assert isinstance(outputs[0], JoinRejected) and outputs[0].reason == "not_otaa"


@pytest.mark.parametrize(
    ("net_id", "first", "size"),
    [
        (0x000000, 0x00000000, 1 << 25),  # type 0: prefix 0, NwkID = 6 low bits, NwkAddr 25 bits
        (0x000013, 0x13 << 25, 1 << 25),
        (0x200005, 0x80000000 | 5 << 24, 1 << 24),  # type 1: prefix 10, NwkID 6 bits, NwkAddr 24 bits
        (0xE00001, 0xFE000000 | 1 << 7, 1 << 7),  # type 7: prefix 1111 1110, NwkID 17 bits, NwkAddr 7 bits
    ],
)
def test_dev_addr_blocks_follow_the_net_id_type(net_id: int, first: int, size: int) -> None:
    assert dev_addr_block(net_id) == (first, size)


def test_dev_addrs_are_unique_inside_the_block_until_it_is_full(tmp_path: Path) -> None:
    net_id = 0xE00001  # 128 addresses
    first, size = dev_addr_block(net_id)
    entries = [dict(OTAA, dev_eui=f"70b3d57ed001{i:04x}", asset_id=f"bin-{i}") for i in range(size + 1)]
    abp = {"dev_eui": "70b3d57ed0020000", "asset_id": "lamp-abp", "kind": "streetlight", "activation": "abp",
           "dev_addr": f"{first + 5:08x}", "nwk_s_key": "11" * 16, "app_s_key": "22" * 16}
    with Registry(tmp_path / "reg.sqlite") as registry:
        registry.import_devices(entries + [abp])
        server = JoinServer(registry, net_id)
        outcomes = [server.handle(parse_join_request(join_request(1, entry))) for entry in entries]
    granted = [o.device.dev_addr for o in outcomes if isinstance(o, JoinGranted)]
    assert len(granted) == size - 1 == len(set(granted))  # one address is the ABP device's
    assert abp["dev_addr"] not in granted
    assert all(first <= int(a, 16) < first + size for a in granted)
    refused = [o for o in outcomes if isinstance(o, JoinRefused)]
    assert [o.reason for o in refused] == ["dev_addr_exhausted", "dev_addr_exhausted"]


def test_a_session_survives_reopening_the_registry_and_reimporting_the_file(tmp_path: Path) -> None:
    path = tmp_path / "reg.sqlite"
    with Registry(path) as registry:
        registry.import_devices([OTAA])
        transmit = SessionLayer(registry).handle_uplink(join_request(3), reception(), NOW)[1]
    node = LoRaNode.from_join_accept(transmit.txpk.data, APP_KEY, 3)
    with Registry(path) as registry:  # the agent restarted
        registry.import_devices([OTAA])  # and the technician imported the provisioning file again
        session = SessionLayer(registry)
        first = session.handle_uplink(node.uplink(), reception(), NOW + 60)[0]
        assert isinstance(first, UplinkAccepted) and first.fcnt == 0
        assert isinstance(session.handle_uplink(join_request(3), reception(), NOW + 70)[0], JoinRejected)
    with Registry(path) as registry:
        registry.import_devices([dict(OTAA, app_key="33" * 16)])  # a new AppKey: the old session ends
        device = registry.get(OTAA["dev_eui"])
        assert (device.dev_addr, device.nwk_s_key, device.last_dev_nonce, device.join_nonce) == (None, None, None, 1)
