"""The device registry: file mode, layout versioning, provisioning import and its validation, key masking, counters."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest

from dos_agent import registry as registry_module
from dos_agent.registry import SCHEMA_VERSION, ProvisioningError, Registry, RegistryError

NWK = "2b7e151628aed2a6abf7158809cf4f3c"
APP = "000102030405060708090a0b0c0d0e0f"
GOOD_TOML = f"""
[[device]]
dev_eui = "70B3D57ED0000001"
asset_id = "lamp-0001"
kind = "streetlight"
activation = "abp"
dev_addr = "26011F01"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"

[[device]]
dev_eui = "70b3d57ed0000002"
asset_id = "bin-0002"
kind = "waste"
activation = "otaa"
app_key = "{NWK}"
join_eui = "0000000000000001"
"""


def abp(**changes: object) -> dict:
    entry = {
        "dev_eui": "70b3d57ed00000aa", "asset_id": "bridge-7", "kind": "bridge", "activation": "abp",
        "dev_addr": "260bbbbb", "nwk_s_key": NWK, "app_s_key": APP,
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def write_toml(tmp_path: Path, text: str = GOOD_TOML) -> Path:
    path = tmp_path / "devices.toml"
    path.write_text(text)
    return path


def test_registry_file_is_private_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "reg.sqlite"
    with Registry(path) as registry:
        registry.import_file(write_toml(tmp_path))
        assert registry.schema_version == SCHEMA_VERSION
        for file in tmp_path.glob("reg.sqlite*"):  # the database and its WAL / shared-memory files
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


def test_a_newer_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "reg.sqlite"
    Registry(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(RegistryError, match="layout version"):
        Registry(path)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "reg.sqlite"
    path.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(RegistryError, match="not a registry"):
        Registry(path)


def test_another_sqlite_database_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE photos (name TEXT)")
    with pytest.raises(RegistryError, match="not a registry"):
        Registry(path)
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["photos"]


def test_import_toml_stores_devices_in_lowercase_with_a_session(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg.sqlite") as registry:
        report = registry.import_file(write_toml(tmp_path))
        assert report.added == ("70b3d57ed0000001", "70b3d57ed0000002")
        lamp = registry.get("70B3D57ED0000001")
        assert (lamp.asset_id, lamp.kind, lamp.dev_addr, lamp.nwk_s_key) == ("lamp-0001", "streetlight", "26011f01", NWK)
        assert lamp.fcnt_up is None and lamp.fcnt_down == 0 and lamp.state == "active"
        assert lamp.fcnt_reset_policy == "reject"
        assert len(lamp.session_id) == 16
        assert registry.devices_by_dev_addr(0x26011F01) == [lamp]
        otaa = registry.get("70b3d57ed0000002")
        assert otaa.dev_addr is None and otaa.session_id is None and otaa.app_key == NWK


def test_import_json_and_reimport(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    path.write_text(json.dumps({"device": [abp()]}))
    with Registry(tmp_path / "reg.sqlite") as registry:
        registry.import_file(path)
        first = registry.get("70b3d57ed00000aa")
        registry.record_uplink(first, 1234)
        registry.flush()

        again = registry.import_file(path)
        assert again.unchanged == ("70b3d57ed00000aa",)
        same = registry.get("70b3d57ed00000aa")
        assert (same.session_id, same.fcnt_up) == (first.session_id, 1234)

        path.write_text(json.dumps({"device": [abp(asset_id="bridge-8")]}))  # a bound device is not moved by import
        with pytest.raises(ProvisioningError, match="DevEUI already bound to asset bridge-7; move it with"):
            registry.import_file(path)
        kept = registry.get("70b3d57ed00000aa")
        assert (kept.asset_id, kept.session_id, kept.fcnt_up) == ("bridge-7", first.session_id, 1234)
        path.write_text(json.dumps({"device": [abp()]}))

        path.write_text(json.dumps({"device": [abp(app_s_key=NWK)]}))  # new keys: a new session, counters afresh
        registry.import_file(path)
        rekeyed = registry.get("70b3d57ed00000aa")
        assert rekeyed.session_id != first.session_id and rekeyed.fcnt_up is None


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (abp(dev_eui="70b3d57ed00000a"), "device #1 (dev_eui 70b3d57ed00000a): dev_eui: expected 16 hex digits"),
        (abp(dev_addr="2601zz01"), "device #1 (dev_eui 70b3d57ed00000aa): dev_addr: expected 8 hex digits"),
        (abp(nwk_s_key=NWK[:-1]), "device #1 (dev_eui 70b3d57ed00000aa): nwk_s_key: expected 32 hex digits"),
        (abp(app_s_key=None), "device #1 (dev_eui 70b3d57ed00000aa): app_s_key: required for ABP"),
        (abp(activation="otaa"), "device #1 (dev_eui 70b3d57ed00000aa): app_key: required for OTAA"),
        (abp(activation="magic"), "device #1 (dev_eui 70b3d57ed00000aa): activation: expected one of abp, otaa"),
        (abp(asset_id="a/b"), "device #1 (dev_eui 70b3d57ed00000aa): asset_id: expected 1-64 characters"),
        (abp(kind="Street Light"), "device #1 (dev_eui 70b3d57ed00000aa): kind: expected a lowercase name"),
        (abp(kind=None), "device #1 (dev_eui 70b3d57ed00000aa): kind: missing"),
        (abp(nwk_skey=NWK), "device #1 (dev_eui 70b3d57ed00000aa): nwk_skey: unknown field"),
        (abp(fcnt_reset_policy="ignore"), "device #1 (dev_eui 70b3d57ed00000aa): fcnt_reset_policy: expected one of"),
        (abp(dev_eui=None), "device #1: dev_eui: missing"),
    ],
)
def test_validation_names_device_and_field(tmp_path: Path, entry: dict, problem: str) -> None:
    with Registry(tmp_path / "reg.sqlite") as registry:
        with pytest.raises(ProvisioningError) as caught:
            registry.import_devices([entry])
        assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems
        assert registry.devices() == []


def test_import_is_all_or_nothing_and_lists_every_problem(tmp_path: Path) -> None:
    entries = [abp(), abp(dev_eui="70b3d57ed00000bb", dev_addr="xyz"), abp(asset_id="bridge-9")]
    with Registry(tmp_path / "reg.sqlite") as registry:
        with pytest.raises(ProvisioningError) as caught:
            registry.import_devices(entries, source="fleet.toml")
        assert caught.value.problems == [
            "device #2 (dev_eui 70b3d57ed00000bb): dev_addr: expected 8 hex digits",
            "device #3 (dev_eui 70b3d57ed00000aa): dev_eui: also given for device #1",
        ]
        assert str(caught.value).startswith("fleet.toml: ")
        assert registry.devices() == []


def test_a_file_without_a_device_list_is_refused(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg.sqlite") as registry:
        with pytest.raises(ProvisioningError, match="device"):
            registry.import_file(write_toml(tmp_path, 'title = "no devices here"\n'))
        with pytest.raises(ProvisioningError, match="not valid TOML"):
            registry.import_file(write_toml(tmp_path, "[[device]\n"))


def test_keys_never_appear_in_repr_or_listing(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg.sqlite") as registry:
        registry.import_file(write_toml(tmp_path))
        for device in registry.devices():
            for text in (repr(device), str(device), repr(device.public_view()), repr(registry.devices())):
                assert NWK not in text and APP not in text
        assert "nwk_s_key=<set>" in repr(registry.get("70b3d57ed0000001"))
        assert registry.get("70b3d57ed0000001").public_view()["app_s_key"] is True


def test_counters_survive_reopening_and_other_writers_are_noticed(tmp_path: Path) -> None:
    path = tmp_path / "reg.sqlite"
    with Registry(path) as registry:
        registry.import_file(write_toml(tmp_path))
        lamp = registry.get("70b3d57ed0000001")
        for fcnt in range(1, 6):
            lamp = registry.record_uplink(lamp, fcnt)
        assert registry.pending == 5
        assert registry.devices_by_dev_addr(0x26011F01)[0].fcnt_up == 5

        with Registry(path) as other:  # e.g. `dos-edge devices import` while the agent runs
            assert other.get("70b3d57ed0000001").fcnt_up is None  # not committed yet
            registry.flush()  # the agent commits counters every fraction of a second; writers wait for that
            other.import_devices([abp()])
            assert other.get("70b3d57ed0000001").fcnt_up == 5
        assert registry.reload_if_changed()
        assert registry.get("70b3d57ed00000aa") is not None
        assert not registry.reload_if_changed()
    with Registry(path) as reopened:
        assert reopened.get("70b3d57ed0000001").fcnt_up == 5


def test_a_counter_of_a_replaced_session_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "reg.sqlite"
    with Registry(path) as registry:
        registry.import_devices([abp()])
        old = registry.get("70b3d57ed00000aa")
        registry.import_devices([abp(nwk_s_key=APP)])
        registry.record_uplink(old, 99)
        registry.flush()
    with Registry(path) as reopened:
        assert reopened.get("70b3d57ed00000aa").fcnt_up is None


def test_a_locked_file_keeps_counters_pending_until_it_is_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "reg.sqlite"
    with Registry(path) as registry:
        registry.import_devices([abp()])
        registry.record_uplink(registry.get("70b3d57ed00000aa"), 77)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the file
        blocker.execute("UPDATE devices SET asset_id = 'renamed'")
        assert registry.flush() is False
        assert registry.pending == 1 and registry.get("70b3d57ed00000aa").fcnt_up == 77
        blocker.execute("COMMIT")
        blocker.close()
        assert registry.reload_if_changed()  # flushes first, then sees the other writer's change
        assert registry.pending == 0
        assert registry.get("70b3d57ed00000aa").asset_id == "renamed"
        assert registry.get("70b3d57ed00000aa").fcnt_up == 77
