"""The device registry: one SQLite file (created 0600, WAL) holding every device, its keys, its frame counters, the join
server's state (DevNonce, JoinNonce, the session it made), each device's MAC state and the queue of downlinks.

The agent is the registry's hot reader: devices are cached in memory by DevAddr, and the cache is reloaded when another
process (`dos-edge devices import`) commits a change (`reload_if_changed`). Uplink counter and MAC state updates go to
the cache at once and to the file in groups (`record_uplink`, then `flush`, which the agent calls a few times a second
and which runs by itself every COMMIT_EVERY updates): a crash may lose the last few counters, which at worst lets a
replay of those frames through again, and those carry the same `event_id` as the first time. Whatever must never be
reused or lost is committed before it is used: a join's session and nonces (`store_join`), each FCntDown
(`reserve_fcnt_down`), and every change to the downlink queue.

Keys are stored as hex in the file (protected by its mode) and never appear in a repr or a log line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import sqlite3
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator

log = logging.getLogger("dos_agent.registry")

#: Version of the table layout; `meta.schema_version`. Each entry of _MIGRATIONS moves the file one version up.
SCHEMA_VERSION = 2

_MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: devices
    """
    CREATE TABLE devices (
        dev_eui TEXT PRIMARY KEY,
        asset_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        activation TEXT NOT NULL,
        dev_addr TEXT,
        nwk_s_key TEXT,
        app_s_key TEXT,
        app_key TEXT,
        join_eui TEXT,
        fcnt_up INTEGER,
        fcnt_down INTEGER NOT NULL DEFAULT 0,
        session_id TEXT,
        fcnt_reset_policy TEXT NOT NULL DEFAULT 'reject',
        state TEXT NOT NULL DEFAULT 'active'
    );
    CREATE INDEX devices_dev_addr ON devices (dev_addr);
    """,
    # 1 -> 2: join server state, MAC state, downlink queue
    """
    ALTER TABLE devices ADD COLUMN last_dev_nonce INTEGER;
    ALTER TABLE devices ADD COLUMN join_nonce INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE devices ADD COLUMN mac_state TEXT;
    CREATE TABLE downlinks (
        id TEXT PRIMARY KEY,
        dev_eui TEXT NOT NULL,
        fport INTEGER NOT NULL,
        confirmed INTEGER NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        fcnt_down INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX downlinks_dev_eui ON downlinks (dev_eui);
    """,
)

#: How long a write waits for another process's write (e.g. an import) to finish.
BUSY_TIMEOUT_MS = 5000
#: Frame counter updates are written and committed once this many have piled up (and on every `flush`).
COMMIT_EVERY = 256

ACTIVATIONS = ("abp", "otaa")
FCNT_RESET_POLICIES = ("reject", "accept")
#: States of a queued downlink: waiting for an uplink to answer, or sent confirmed and waiting for the device's ACK.
DOWNLINK_STATES = ("queued", "awaiting_ack")

_HEX = re.compile(r"[0-9a-fA-F]+")
#: An asset id is one MQTT topic level: no '/', '+', '#', no spaces.
_ASSET_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")

_REQUIRED = ("dev_eui", "asset_id", "kind", "activation")
_OPTIONAL = ("dev_addr", "nwk_s_key", "app_s_key", "app_key", "join_eui", "fcnt_reset_policy")
_KEY_FIELDS = ("nwk_s_key", "app_s_key", "app_key")


class RegistryError(Exception):
    """The registry file cannot be used (wrong layout version, not a registry)."""


class ProvisioningError(ValueError):
    """A provisioning file that does not validate. `problems` lists every problem, each naming the device and field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """One device. EUIs, DevAddr and keys are lowercase hex; keys are None when not provisioned.

    `fcnt_up` is the last 32-bit uplink counter accepted in this session (None before the first uplink), `fcnt_down`
    the next FCntDown to use; `session_id` changes whenever the device's session (DevAddr or keys) changes.
    OTAA: `last_dev_nonce` is the highest DevNonce accepted (None before the first join), `join_nonce` the last
    JoinNonce used. `mac_state` is the MAC layer's state of this session as JSON (None: the defaults).
    """

    dev_eui: str
    asset_id: str
    kind: str
    activation: str
    dev_addr: str | None = None
    nwk_s_key: str | None = None
    app_s_key: str | None = None
    app_key: str | None = None
    join_eui: str | None = None
    fcnt_up: int | None = None
    fcnt_down: int = 0
    session_id: str | None = None
    fcnt_reset_policy: str = "reject"
    state: str = "active"
    last_dev_nonce: int | None = None
    join_nonce: int = 0
    mac_state: str | None = None

    def __repr__(self) -> str:
        shown = []
        for name in self.__slots__:
            value = getattr(self, name)
            if name in _KEY_FIELDS:
                shown.append(f"{name}={'<set>' if value else None}")
            elif name == "mac_state" and value is not None:
                shown.append(f"mac_state=<{len(value)} chars>")
            else:
                shown.append(f"{name}={value!r}")
        return f"DeviceRecord({', '.join(shown)})"

    __str__ = __repr__

    def public_view(self) -> dict[str, Any]:
        """Everything but the keys (for listings): key fields become booleans saying whether they are set."""
        view: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            view[name] = bool(value) if name in _KEY_FIELDS else value
        return view


@dataclass(frozen=True, slots=True)
class QueuedDownlink:
    """One application downlink waiting in a device's queue (`state` one of DOWNLINK_STATES). `payload` is the
    plaintext FRMPayload; `fcnt_down` is the FCntDown it was last sent with and `attempts` how many uplinks passed
    without the device's ACK (confirmed downlinks)."""

    id: str
    dev_eui: str
    fport: int
    confirmed: bool
    payload: bytes
    state: str = "queued"
    fcnt_down: int | None = None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did, by DevEUI."""

    added: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: tuple[str, ...]


_COLUMNS = DeviceRecord.__slots__
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM devices"


def _create_private(path: Path) -> None:
    """Create the file with mode 0600 before SQLite opens it (SQLite gives its -wal/-shm files the same mode)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class Registry:
    """The SQLite registry. Use as a context manager, or call `close()`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            _create_private(self.path)
        self._pending = 0
        self._unwritten: dict[tuple[str, str | None], tuple[int, str | None]] = {}
        self._by_eui: dict[str, DeviceRecord] = {}
        self._by_addr: dict[int, list[DeviceRecord]] = {}
        self._by_asset: dict[str, DeviceRecord] = {}
        self._data_version = -1
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open {self.path}: {exc}") from None
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
            self._reload()
        except sqlite3.Error as exc:
            self._db.close()
            raise RegistryError(f"{self.path} is not a registry: {exc}") from None
        except RegistryError:
            self._db.close()
            raise

    # --- lifecycle ----------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Commit pending counters and close the file."""
        if not self.flush():
            log.error("registry: closing with %d counter update(s) unwritten", len(self._unwritten))
        self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise RegistryError(f"{self.path} is not a registry: it holds other tables ({', '.join(sorted(tables))})")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise RegistryError(
                f"{self.path} has registry layout version {version}; this dos-edge knows up to {SCHEMA_VERSION}"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._transaction():
                for statement in _MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(target),)
                )

    @property
    def schema_version(self) -> int:
        """The layout version of the open file."""
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])

    # --- reads --------------------------------------------------------------------------------------------------------

    def _reload(self) -> None:
        records = [DeviceRecord(*row) for row in self._db.execute(_SELECT + " ORDER BY dev_eui")]
        self._by_eui = {r.dev_eui: r for r in records}
        by_addr: dict[int, list[DeviceRecord]] = {}
        for record in records:
            if record.dev_addr is not None and record.state == "active":
                by_addr.setdefault(int(record.dev_addr, 16), []).append(record)
        self._by_addr = by_addr
        self._by_asset = {}
        for record in records:  # an active device wins over a retired one holding the same asset
            held = self._by_asset.get(record.asset_id)
            if held is None or held.state != "active":
                self._by_asset[record.asset_id] = record
        self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]

    def reload_if_changed(self) -> bool:
        """Reload the cache when another connection committed since the last load; True when it did."""
        if self._db.execute("PRAGMA data_version").fetchone()[0] == self._data_version:
            return False
        if not self.flush():  # reloading now would drop counters that are only in memory
            return False
        self._reload()
        return True

    def devices_by_dev_addr(self, dev_addr: int) -> list[DeviceRecord]:
        """Active devices currently holding this DevAddr (usually one; ABP address collisions give several)."""
        return self._by_addr.get(dev_addr, [])

    def get(self, dev_eui: str) -> DeviceRecord | None:
        """The device with this DevEUI (hex, any case), or None."""
        return self._by_eui.get(dev_eui.lower())

    def devices(self) -> list[DeviceRecord]:
        """Every device, ordered by DevEUI."""
        return list(self._by_eui.values())

    def device_for_asset(self, asset_id: str) -> DeviceRecord | None:
        """The device bound to an asset (the active one when there are several), or None."""
        device = self._by_asset.get(asset_id)
        return None if device is None else self._by_eui.get(device.dev_eui)

    def dev_addrs_in_use(self) -> set[int]:
        """Every DevAddr held by a device of the registry (active or not)."""
        return {int(d.dev_addr, 16) for d in self._by_eui.values() if d.dev_addr is not None}

    def _put(self, updated: DeviceRecord) -> None:
        """Replace a device's cached record (same DevAddr) with `updated`."""
        self._by_eui[updated.dev_eui] = updated
        if self._by_asset.get(updated.asset_id, updated).dev_eui == updated.dev_eui:
            self._by_asset[updated.asset_id] = updated
        if updated.dev_addr is not None:
            holders = self._by_addr.get(int(updated.dev_addr, 16), [])
            for i, held in enumerate(holders):
                if held.dev_eui == updated.dev_eui:
                    holders[i] = updated

    # --- frame counters -----------------------------------------------------------------------------------------------

    def record_uplink(self, device: DeviceRecord, fcnt_up: int | None, mac_state: str | None = None) -> DeviceRecord:
        """Store the last accepted 32-bit uplink counter of the device's current session (and its MAC state as JSON,
        when given); returns the updated record.

        Written with the next group (see COMMIT_EVERY and `flush`). A session that changed meanwhile is left alone.
        """
        updated = DeviceRecord(
            device.dev_eui, device.asset_id, device.kind, device.activation, device.dev_addr, device.nwk_s_key,
            device.app_s_key, device.app_key, device.join_eui, fcnt_up, device.fcnt_down, device.session_id,
            device.fcnt_reset_policy, device.state, device.last_dev_nonce, device.join_nonce,
            device.mac_state if mac_state is None else mac_state,
        )
        if not self._same_session(device):
            return updated
        self._put(updated)
        self._unwritten[(device.dev_eui, device.session_id)] = (fcnt_up, updated.mac_state)
        self._pending += 1
        if self._pending >= COMMIT_EVERY:
            self.flush()
        return updated

    def record_mac_state(self, device: DeviceRecord, mac_state: str) -> DeviceRecord:
        """Store the device's MAC state (JSON) of its current session, written with the next group."""
        cached = self._by_eui.get(device.dev_eui, device)
        return self.record_uplink(cached, cached.fcnt_up, mac_state)

    def _same_session(self, device: DeviceRecord) -> bool:
        cached = self._by_eui.get(device.dev_eui)
        return cached is not None and cached.session_id == device.session_id

    def reserve_fcnt_down(self, device: DeviceRecord) -> DeviceRecord:
        """Take the device's next FCntDown (`device.fcnt_down`) for a downlink: the following value is committed to
        the file before this returns, so no FCntDown is ever used twice. Returns the record holding the following
        value. Raises LookupError when the device's session changed meanwhile, sqlite3.Error when the file cannot
        be written (then nothing may be sent)."""
        cached = self._by_eui.get(device.dev_eui)
        if cached is None or cached.session_id != device.session_id:
            raise LookupError(f"device {device.dev_eui} is no longer in that session")
        updated = replace(cached, fcnt_down=cached.fcnt_down + 1)
        with self._transaction():
            self._db.execute(
                "UPDATE devices SET fcnt_down = ? WHERE dev_eui = ? AND session_id IS ?",
                (updated.fcnt_down, updated.dev_eui, updated.session_id),
            )
        self._put(updated)
        return updated

    def store_join(
        self, device: DeviceRecord, dev_addr: int, nwk_s_key: bytes, app_s_key: bytes, dev_nonce: int, join_nonce: int,
        mac_state: str | None,
    ) -> DeviceRecord:
        """Start the session an OTAA join made (new DevAddr and keys, counters afresh, the nonces recorded) and commit
        it before this returns. Raises sqlite3.Error when the file cannot be written (then no JoinAccept may go)."""
        cached = self._by_eui.get(device.dev_eui, device)
        updated = replace(
            cached, dev_addr=f"{dev_addr:08x}", nwk_s_key=nwk_s_key.hex(), app_s_key=app_s_key.hex(), fcnt_up=None,
            fcnt_down=0, session_id=_new_session_id(), last_dev_nonce=dev_nonce, join_nonce=join_nonce,
            mac_state=mac_state,
        )
        with self._transaction():
            self._db.execute(
                "UPDATE devices SET dev_addr = ?, nwk_s_key = ?, app_s_key = ?, fcnt_up = NULL, fcnt_down = 0, "
                "session_id = ?, last_dev_nonce = ?, join_nonce = ?, mac_state = ? WHERE dev_eui = ?",
                (updated.dev_addr, updated.nwk_s_key, updated.app_s_key, updated.session_id, dev_nonce, join_nonce,
                 mac_state, updated.dev_eui),
            )
        if cached.dev_addr is not None:
            old_holders = self._by_addr.get(int(cached.dev_addr, 16), [])
            old_holders[:] = [held for held in old_holders if held.dev_eui != cached.dev_eui]
        self._by_eui[updated.dev_eui] = updated
        if self._by_asset.get(updated.asset_id, updated).dev_eui == updated.dev_eui:
            self._by_asset[updated.asset_id] = updated
        if updated.state == "active":
            self._by_addr.setdefault(dev_addr, []).append(updated)
        return updated

    # --- downlink queue -----------------------------------------------------------------------------------------------

    def queued_downlinks(self) -> dict[str, list[QueuedDownlink]]:
        """Every queued downlink by DevEUI, oldest first."""
        queues: dict[str, list[QueuedDownlink]] = {}
        rows = self._db.execute(
            "SELECT id, dev_eui, fport, confirmed, payload, state, fcnt_down, attempts FROM downlinks ORDER BY rowid"
        )
        for id_, eui, fport, confirmed, payload, state, fcnt_down, attempts in rows:
            item = QueuedDownlink(id_, eui, fport, bool(confirmed), bytes.fromhex(payload), state, fcnt_down, attempts)
            queues.setdefault(eui, []).append(item)
        return queues

    def save_downlink(self, item: QueuedDownlink) -> None:
        """Add a downlink to the queue or update it in place (committed at once; sqlite3.Error if it cannot be)."""
        with self._transaction():
            updated = self._db.execute(
                "UPDATE downlinks SET state = ?, fcnt_down = ?, attempts = ? WHERE id = ?",
                (item.state, item.fcnt_down, item.attempts, item.id),
            ).rowcount
            if not updated:
                self._db.execute(
                    "INSERT INTO downlinks (id, dev_eui, fport, confirmed, payload, state, fcnt_down, attempts) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (item.id, item.dev_eui, item.fport, int(item.confirmed), item.payload.hex(), item.state,
                     item.fcnt_down, item.attempts),
                )

    def delete_downlink(self, downlink_id: str) -> None:
        """Take a downlink off the queue (committed at once)."""
        with self._transaction():
            self._db.execute("DELETE FROM downlinks WHERE id = ?", (downlink_id,))

    def flush(self) -> bool:
        """Write and commit pending counter updates (only where the device is still in the same session).

        False when the file could not be written (e.g. locked by another writer for longer than the busy timeout):
        the updates stay pending for the next flush, and the in-memory counters stay authoritative meanwhile."""
        if self._unwritten:
            rows = [(fcnt, mac, eui, session) for (eui, session), (fcnt, mac) in self._unwritten.items()]
            try:
                with self._transaction():
                    self._db.executemany(
                        "UPDATE devices SET fcnt_up = ?, mac_state = ? WHERE dev_eui = ? AND session_id IS ?", rows
                    )
            except sqlite3.Error as exc:
                log.warning("registry: %d counter update(s) not written yet: %s", len(rows), exc)
                return False
            self._unwritten = {}
        self._pending = 0
        return True

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @property
    def pending(self) -> int:
        """Counter updates recorded but not written to the file yet."""
        return self._pending

    # --- provisioning -------------------------------------------------------------------------------------------------

    def import_file(self, path: str | os.PathLike[str]) -> ImportReport:
        """Import a provisioning file (.toml or .json) holding a `device` list; all or nothing.

        Raises ProvisioningError naming every bad device and field, or OSError when the file cannot be read.
        """
        path = Path(path)
        raw = path.read_bytes()
        is_json = path.suffix.lower() == ".json"
        try:
            document = json.loads(raw) if is_json else tomllib.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProvisioningError(str(path), [f"not valid {'JSON' if is_json else 'TOML'}: {exc}"]) from None
        if not isinstance(document, dict) or not isinstance(document.get("device"), list):
            raise ProvisioningError(str(path), ["expected a `device` list ([[device]] tables in TOML)"])
        return self.import_devices(document["device"], source=str(path))

    def import_devices(self, entries: Iterable[object], source: str = "import") -> ImportReport:
        """Validate and store device entries (dicts of the provisioning fields); all or nothing."""
        records, problems = validate_devices(list(entries))
        if problems:
            raise ProvisioningError(source, problems)
        self.flush()
        added: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        with self._transaction():
            for record in records:
                row = self._db.execute(_SELECT + " WHERE dev_eui = ?", (record.dev_eui,)).fetchone()
                old = DeviceRecord(*row) if row else None
                new = _merge(old, record)
                if old is None:
                    added.append(new.dev_eui)
                elif new == old:
                    unchanged.append(new.dev_eui)
                    continue
                else:
                    updated.append(new.dev_eui)
                self._db.execute(
                    f"INSERT OR REPLACE INTO devices ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                    tuple(getattr(new, name) for name in _COLUMNS),
                )
        self._reload()
        return ImportReport(tuple(added), tuple(updated), tuple(unchanged))


def _merge(old: DeviceRecord | None, new: DeviceRecord) -> DeviceRecord:
    """The stored record after importing `new` over `old`: a changed session (DevAddr or keys) starts counters afresh.

    An OTAA device keeps the session its last join made while its AppKey and JoinEUI stay the same; a new AppKey
    needs a new join, and DevNonces start over (old JoinRequests do not verify under the new key)."""
    if old is None:
        return replace(new, session_id=_new_session_id() if new.dev_addr else None)
    if old.activation == new.activation == "otaa":
        if (old.app_key, old.join_eui) == (new.app_key, new.join_eui):
            return replace(
                new, dev_addr=old.dev_addr, nwk_s_key=old.nwk_s_key, app_s_key=old.app_s_key, fcnt_up=old.fcnt_up,
                fcnt_down=old.fcnt_down, session_id=old.session_id, state=old.state,
                last_dev_nonce=old.last_dev_nonce, join_nonce=old.join_nonce, mac_state=old.mac_state,
            )
        return replace(new, state=old.state, join_nonce=old.join_nonce)
    same_session = (old.dev_addr, old.nwk_s_key, old.app_s_key) == (new.dev_addr, new.nwk_s_key, new.app_s_key)
    if same_session:
        return replace(
            new, fcnt_up=old.fcnt_up, fcnt_down=old.fcnt_down, session_id=old.session_id, state=old.state,
            join_nonce=old.join_nonce, mac_state=old.mac_state,
        )
    return replace(new, session_id=_new_session_id() if new.dev_addr else None, state=old.state,
                   join_nonce=old.join_nonce)


def _new_session_id() -> str:
    return secrets.token_hex(8)


def _hex_field(entry: dict[str, Any], name: str, digits: int, where: str, problems: list[str]) -> str | None:
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != digits or not _HEX.fullmatch(value):
        problems.append(f"{where}: {name}: expected {digits} hex digits")
        return None
    return value.lower()


def validate_devices(entries: list[object]) -> tuple[list[DeviceRecord], list[str]]:
    """Check provisioning entries; returns the records and a list of problems (each naming device and field)."""
    records: list[DeviceRecord] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            problems.append(f"device #{number}: expected a table of fields")
            continue
        eui = entry.get("dev_eui")
        where = f"device #{number} (dev_eui {eui})" if isinstance(eui, str) else f"device #{number}"
        before = len(problems)
        for name in sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL)):
            problems.append(f"{where}: {name}: unknown field")
        for name in _REQUIRED:
            if entry.get(name) is None:
                problems.append(f"{where}: {name}: missing")
        dev_eui = _hex_field(entry, "dev_eui", 16, where, problems)
        join_eui = _hex_field(entry, "join_eui", 16, where, problems)
        dev_addr = _hex_field(entry, "dev_addr", 8, where, problems)
        keys = {name: _hex_field(entry, name, 32, where, problems) for name in _KEY_FIELDS}
        asset_id = entry.get("asset_id")
        if asset_id is not None and (not isinstance(asset_id, str) or not _ASSET_ID.fullmatch(asset_id)):
            problems.append(f"{where}: asset_id: expected 1-64 characters of A-Z a-z 0-9 . _ : -")
        kind = entry.get("kind")
        if kind is not None and (not isinstance(kind, str) or not _KIND.fullmatch(kind)):
            problems.append(f"{where}: kind: expected a lowercase name such as streetlight")
        activation = entry.get("activation")
        if activation is not None and activation not in ACTIVATIONS:
            problems.append(f"{where}: activation: expected one of {', '.join(ACTIVATIONS)}")
        policy = entry.get("fcnt_reset_policy", "reject")
        if policy not in FCNT_RESET_POLICIES:
            problems.append(f"{where}: fcnt_reset_policy: expected one of {', '.join(FCNT_RESET_POLICIES)}")
        if activation == "abp":
            for name in ("dev_addr", "nwk_s_key", "app_s_key"):
                if entry.get(name) is None:
                    problems.append(f"{where}: {name}: required for ABP")
        elif activation == "otaa":
            for name in ("app_key", "join_eui"):
                if entry.get(name) is None:
                    problems.append(f"{where}: {name}: required for OTAA")
        if dev_eui is not None:
            if dev_eui in seen:
                problems.append(f"{where}: dev_eui: also given for device #{seen[dev_eui]}")
            seen.setdefault(dev_eui, number)
        if len(problems) == before:
            records.append(
                DeviceRecord(
                    dev_eui=dev_eui,
                    asset_id=asset_id,
                    kind=kind,
                    activation=activation,
                    dev_addr=dev_addr,
                    join_eui=join_eui,
                    fcnt_reset_policy=policy,
                    **keys,
                )
            )
    return records, problems
