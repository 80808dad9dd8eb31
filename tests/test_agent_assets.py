"""Assets, bindings and swaps in the registry (layout 3): a v2 file migrated in place, swap / undo / move / retire with
their journal, refusals with one-line reasons, cumulative readings continuing across bindings, and the session layer
rejecting a retired device's frames as `retired_device`."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from dos_agent import registry as registry_module
from dos_agent.registry import Asset, AssetError, ProvisioningError, Registry
from dos_agent.session import Reception, SessionLayer, UplinkAccepted, UplinkRejected
from dos_codecs.crypto import SessionKeys
from dos_codecs.lorawan import DataFrame, MType

NWK = "2b7e151628aed2a6abf7158809cf4f3c"
APP = "000102030405060708090a0b0c0d0e0f"
T0 = 1_795_000_000.0
RECEPTION = Reception(gateway_eui="aa555a0000000101", tmst=1_000_000, freq=868_100_000, sf=7, bw=125_000, rssi=-80,
                      snr=7.0)


def device(index: int, asset_id: str = "SL-1", kind: str = "streetlight", **changes: object) -> dict:
    entry = {"dev_eui": f"70b3d57ed00000{index:02x}", "asset_id": asset_id, "kind": kind, "activation": "abp",
             "dev_addr": f"2601{index:04x}", "nwk_s_key": NWK, "app_s_key": APP}
    entry.update(changes)
    return entry


def eui(index: int) -> str:
    return f"70b3d57ed00000{index:02x}"


@pytest.fixture
def registry(tmp_path: Path):
    with Registry(tmp_path / "reg.sqlite") as reg:
        reg.add_asset(Asset("SL-1", "streetlight", lat=51.51, lon=7.46, address="Hansaplatz 1",
                            calibration={"ina219_shunt_ohm": 0.1}, settings={"dim_level": 80}, created_at=T0))
        reg.add_asset(Asset("SL-2", "streetlight", created_at=T0))
        reg.import_devices([device(1)], at=T0)
        yield reg


def uplink(index: int, fcnt: int) -> bytes:
    frame = DataFrame(mtype=MType.UNCONFIRMED_UP, dev_addr=0x26010000 + index, fcnt16=fcnt & 0xFFFF, adr=False,
                      ack=False, fopts=b"", fport=1, frm_payload=b"\xa1\x01\xf5")
    return SessionKeys(bytes.fromhex(NWK), bytes.fromhex(APP)).seal(frame, fcnt)


def test_a_v2_file_migrates_in_place_with_every_device_bound_to_its_asset(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for script in registry_module._MIGRATIONS[:2]:
        db.executescript(script)
    db.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    db.execute("INSERT INTO devices (dev_eui, asset_id, kind, activation, dev_addr, nwk_s_key, app_s_key, fcnt_up) "
               "VALUES ('70b3d57ed0000001', 'BR-1', 'bridge', 'abp', '26010001', ?, ?, 77)", (NWK, APP))
    db.commit()
    db.close()
    with Registry(path) as reg:
        assert reg.schema_version == 3
        assert [(a.asset_id, a.kind, a.state) for a in reg.assets()] == [("BR-1", "bridge", "active")]
        [binding] = reg.bindings("BR-1")
        assert (binding.dev_eui, binding.to_at) == ("70b3d57ed0000001", None)
        assert reg.get("70b3d57ed0000001").fcnt_up == 77 and reg.device_for_asset("BR-1").dev_eui == binding.dev_eui
    with Registry(path) as reg:  # opening again migrates nothing twice
        assert len(reg.bindings()) == 1


def test_swap_binds_the_new_device_retires_the_old_and_journals_it(registry: Registry) -> None:
    registry.import_devices([device(2, replace=False, asset_id="SL-2")], at=T0)
    registry.retire_device(eui(2), T0 + 5)  # SL-2 is left without a device; 02 can never be bound again
    registry.import_devices([device(3, asset_id="SL-1", replace=True)], at=T0 + 10)  # flash --replace's record
    assert registry.get(eui(1)).state == "retired" and registry.get(eui(3)).state == "active"
    assert registry.device_for_asset("SL-1").dev_eui == eui(3)
    history = registry.bindings("SL-1")
    assert [(b.dev_eui, b.from_at, b.to_at) for b in history] == [(eui(1), T0, T0 + 10), (eui(3), T0 + 10, None)]
    swaps = [(j.type, j.old_dev_eui, j.new_dev_eui, j.at) for j in registry.journal("SL-1")]
    assert swaps == [("swap", eui(1), eui(3), T0 + 10)]
    asset = registry.asset("SL-1")  # the asset keeps its id, place, calibration and settings
    assert (asset.calibration, asset.settings, asset.address) == ({"ina219_shunt_ohm": 0.1}, {"dim_level": 80},
                                                                   "Hansaplatz 1")
    with pytest.raises(AssetError, match="retired and cannot be bound again"):
        registry.swap("SL-2", eui(2), T0 + 20)


@pytest.mark.parametrize(("asset_id", "dev", "message"), [
    ("SL-9", 1, "unknown asset SL-9; add it with `dos-edge assets add`"),
    ("SL-2", 9, "unknown device 70b3d57ed0000009; register it first"),
    ("SL-1", 1, "device 70b3d57ed0000001 is already bound to asset SL-1"),
    ("SL-2", 1, "DevEUI 70b3d57ed0000001 is bound to asset SL-1; retire it there, or pass --move"),
    ("SL-2", 4, "device 70b3d57ed0000004 is a waste node, asset SL-2 a streetlight"),
])
def test_refused_swaps_say_why_in_one_line_and_change_nothing(registry: Registry, asset_id: str, dev: int,
                                                              message: str) -> None:
    registry.add_asset(Asset("WC-1", "waste", created_at=T0))
    registry.import_devices([device(4, asset_id="WC-1", kind="waste")], at=T0)
    before = (registry.bindings(), registry.journal())
    with pytest.raises(AssetError) as caught:
        registry.swap(asset_id, eui(dev), T0 + 1)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert (registry.bindings(), registry.journal()) == before


def test_a_device_moved_to_another_asset_leaves_the_first_without_a_device(registry: Registry) -> None:
    registry.import_devices([device(2, asset_id="SL-2")], at=T0)
    entry = registry.swap("SL-2", eui(1), T0 + 30, move=True)
    assert (entry.old_dev_eui, entry.new_dev_eui) == (eui(2), eui(1))
    assert registry.device_for_asset("SL-1") is None and registry.device_for_asset("SL-2").dev_eui == eui(1)
    assert registry.get(eui(2)).state == "retired" and registry.get(eui(1)).asset_id == "SL-2"
    assert [(j.asset_id, j.type) for j in registry.journal()] == [("SL-1", "unbind"), ("SL-2", "swap")]


def test_a_swap_undone_by_mistake_restores_the_old_device(registry: Registry) -> None:
    registry.import_devices([device(2, asset_id="SL-1", replace=True)], at=T0 + 10)
    undo = registry.undo_swap("SL-1", T0 + 20)
    assert (undo.type, undo.old_dev_eui, undo.new_dev_eui) == ("undo", eui(2), eui(1))
    assert registry.device_for_asset("SL-1").dev_eui == eui(1)
    assert registry.get(eui(1)).state == "active" and registry.get(eui(2)).state == "provisioned"
    assert [(b.dev_eui, b.to_at) for b in registry.bindings("SL-1")] == [(eui(1), T0 + 10), (eui(2), T0 + 20),
                                                                        (eui(1), None)]
    with pytest.raises(AssetError, match="not a swap \\(undo\\); nothing to undo"):
        registry.undo_swap("SL-1", T0 + 30)
    registry.swap("SL-2", eui(2), T0 + 40)  # the unbound device is usable elsewhere


def test_a_retired_asset_takes_its_device_with_it_and_accepts_no_other(registry: Registry) -> None:
    entry = registry.retire_asset("SL-1", T0 + 50)
    assert (entry.type, entry.old_dev_eui) == ("retire_asset", eui(1))
    assert registry.asset("SL-1").state == "retired" and registry.get(eui(1)).state == "retired"
    assert registry.device_for_asset("SL-1") is None  # downlinks to it fail as unknown_asset
    registry.import_devices([device(2, asset_id="SL-2")], at=T0)
    with pytest.raises(AssetError, match="asset SL-1 is retired"):
        registry.swap("SL-1", eui(2), T0 + 60)
    with pytest.raises(ProvisioningError, match="asset SL-1 is retired"):
        registry.import_devices([device(3, asset_id="SL-1")], at=T0 + 60)
    assert registry.bindings("SL-1")[-1].to_at == T0 + 50


def test_import_refuses_a_second_device_for_a_bound_asset_without_replace(registry: Registry) -> None:
    with pytest.raises(ProvisioningError, match="asset SL-1 is bound to device 70b3d57ed0000001; set replace = true"):
        registry.import_devices([device(2, asset_id="SL-1")], at=T0)
    with pytest.raises(ProvisioningError, match="replace: expected true or false"):
        registry.import_devices([device(2, asset_id="SL-1", replace="yes")], at=T0)
    assert registry.get(eui(2)) is None


def test_cumulative_readings_continue_across_swap_move_and_undo(registry: Registry, tmp_path: Path) -> None:
    assert registry.continue_cumulative(eui(1), {"energy": 100}) == {"energy": 100}
    assert registry.continue_cumulative(eui(1), {"energy": 130}) == {"energy": 130}
    registry.import_devices([device(2, asset_id="SL-1", replace=True)], at=T0 + 10)
    assert registry.continue_cumulative(eui(2), {"energy": 1}) == {"energy": 131}  # a fresh device counts from 0
    assert registry.continue_cumulative(eui(2), {"energy": 5}) == {"energy": 135}
    registry.undo_swap("SL-1", T0 + 20)  # the old device counted on meanwhile: its own series goes on from 130
    assert registry.continue_cumulative(eui(1), {"energy": 140}) == {"energy": 145}
    registry.flush()
    with Registry(tmp_path / "reg.sqlite") as other:  # offsets and last values are in the file
        registry.import_devices([device(3, asset_id="SL-2")], at=T0)
        other.reload_if_changed()
        other.swap("SL-2", eui(1), T0 + 30, move=True)
        assert other.continue_cumulative(eui(1), {"energy": 150}) == {"energy": 150 - 140}
        assert other.continue_cumulative(eui(3), {"energy": 7}) == {"energy": 7}


def test_the_journal_is_published_once(registry: Registry) -> None:
    registry.import_devices([device(2, asset_id="SL-1", replace=True)], at=T0 + 10)
    pending = registry.unpublished_journal()
    assert [(j.type, j.asset_id) for j in pending] == [("swap", "SL-1")]
    registry.mark_published([j.id for j in pending])
    assert registry.unpublished_journal() == [] and registry.journal()[0].published


def test_a_retired_devices_frames_are_rejected_as_retired_device(registry: Registry, tmp_path: Path) -> None:
    session = SessionLayer(registry, dedup_window_s=0)
    [accepted] = [o for o in session.handle_uplink(uplink(1, 10), RECEPTION, T0) if isinstance(o, UplinkAccepted)]
    assert accepted.device.asset_id == "SL-1"
    with Registry(tmp_path / "reg.sqlite") as cli:  # the swap comes from another process, as from `dos-edge swap`
        cli.import_devices([device(2, asset_id="SL-1", dev_addr="26010002", replace=True)], at=T0 + 10)
    assert registry.reload_if_changed()
    [rejected] = session.handle_uplink(uplink(1, 11), RECEPTION, T0 + 20)
    assert isinstance(rejected, UplinkRejected) and rejected.reason == "retired_device"
    assert rejected.dev_eui == eui(1) and rejected.detail.startswith("retired device 70b3d57ed0000001")
    outputs = session.handle_uplink(uplink(2, 0), RECEPTION, T0 + 30)
    assert [o.device.dev_eui for o in outputs if isinstance(o, UplinkAccepted)] == [eui(2)]
    [stranger] = session.handle_uplink(uplink(7, 0), RECEPTION, T0 + 40)  # no one holds 26010007: not "retired"
    assert stranger.reason == "unknown_dev_addr"


def test_the_agent_publishes_swaps_made_while_it_was_down_continues_energy_and_reports_the_retired(
        mosquitto, tmp_path: Path) -> None:
    """The real Agent over UDP and Mosquitto: a swap made while it was stopped is published when it starts, an undo
    made while it runs as soon as it sees it; energy stays the asset's series; the retired node is reported."""
    import uuid

    from dos_agent.app import AgentConfig
    from dos_agent.events import iso_utc
    from dos_codecs.schema import load_schema
    from test_agent_gwmp import AgentThread
    from test_agent_network import Forwarder, Tap
    from test_agent_session import LoRaNode

    schema = load_schema("streetlight")
    path = tmp_path / "registry.sqlite"
    old, new = device(1, asset_id="SL-1"), device(2, asset_id="SL-1", dev_addr="26010002", nwk_s_key="5a" * 16,
                                                  app_s_key="a5" * 16)
    nodes = {1: LoRaNode.from_entry(old), 2: LoRaNode.from_entry(new)}
    prefix = f"a{uuid.uuid4().hex[:10]}"
    config = AgentConfig(registry=path, udp_host="127.0.0.1", udp_port=0, mqtt_host=mosquitto.host,
                         mqtt_port=mosquitto.port, prefix=prefix)
    with Registry(path) as reg:
        reg.import_devices([old], at=T0)
    tap = Tap(mosquitto.host, mosquitto.port, prefix)
    tmst = iter(range(1_000_000, 10**9, 10_000_000))

    def send(index: int, energy: int, gateway: Forwarder) -> None:
        gateway.push(nodes[index].uplink(schema.encode("reading", {"lamp_on": True, "energy": energy})), next(tmst))

    try:
        with AgentThread(config) as agent_thread:
            gateway = Forwarder("aa555a0000000e01", agent_thread.agent.udp_address)
            send(1, 100, gateway)
            assert tap.wait_for("assets/SL-1/up")["readings"]["energy"]["value"] == 100
            gateway.close()
        with Registry(path) as reg:  # the swap, while the agent is down
            reg.import_devices([dict(new, replace=True)], at=T0 + 10)
        with AgentThread(config) as agent_thread:
            swap = tap.wait_for("assets/SL-1/event/swap")
            assert (swap["old_dev_eui"], swap["new_dev_eui"], swap["undo"]) == (eui(1), eui(2), False)
            assert swap["at"] == iso_utc(T0 + 10)
            gateway = Forwarder("aa555a0000000e01", agent_thread.agent.udp_address)
            send(2, 3, gateway)
            first_new = tap.wait_for("assets/SL-1/up", lambda d: d["dev_eui"] == eui(2))
            assert first_new["readings"]["energy"]["value"] == 103
            send(1, 104, gateway)  # the old node still transmits
            rejected = tap.wait_for("assets/SL-1/event/rejected")
            assert (rejected["reason"], rejected["dev_eui"]) == ("retired_device", eui(1))
            with Registry(path) as reg:  # undo, while the agent runs
                reg.undo_swap("SL-1", T0 + 20)
            undo = tap.wait_for("assets/SL-1/event/swap", lambda d: d["undo"])
            assert (undo["old_dev_eui"], undo["new_dev_eui"]) == (eui(2), eui(1))
            deadline = time.monotonic() + 5
            while agent_thread.call(lambda: agent_thread.agent.registry.device_for_asset("SL-1").dev_eui) != eui(1):
                assert time.monotonic() < deadline, "the agent did not pick up the undo"
                time.sleep(0.05)
            send(1, 110, gateway)
            back = tap.wait_for("assets/SL-1/up", lambda d: d["dev_eui"] == eui(1) and d["fcnt"] > 0)
            # the asset's 103 plus what the old node counted since its last accepted value (100; 104 was rejected)
            assert back["readings"]["energy"]["value"] == 103 + (110 - 100)
            gateway.close()
        ups = tap.on("assets/SL-1/up")
        assert [u["dev_eui"] for u in ups] == [eui(1), eui(2), eui(1)], "the retired node's frame was published"
        assert len(tap.on("assets/SL-1/event/swap")) == 2, "a journal entry was published twice"
    finally:
        tap.close()


def test_downlinks_queued_for_a_retired_device_fail_as_device_inactive(registry: Registry, tmp_path: Path) -> None:
    from dos_agent.session import DownlinkStatus

    session = SessionLayer(registry, dedup_window_s=0)
    [queued] = session.request_downlink("SL-1", b'{"fport": 10, "data": "01ff", "id": "cmd-1"}', T0)
    assert (queued.status, queued.dev_eui) == ("queued", eui(1))
    assert session.drop_inactive_queues(T0 + 1) == []  # the device is active: its queue stays
    with Registry(tmp_path / "reg.sqlite") as cli:
        cli.import_devices([device(2, asset_id="SL-1", dev_addr="26010002", replace=True)], at=T0 + 10)
    assert registry.reload_if_changed()
    [failed] = session.drop_inactive_queues(T0 + 11)
    assert isinstance(failed, DownlinkStatus)
    assert (failed.status, failed.reason, failed.downlink_id, failed.asset_id) == ("failed", "device_inactive",
                                                                                  "cmd-1", "SL-1")
    assert registry.queued_downlinks() == {} and session.drop_inactive_queues(T0 + 12) == []
