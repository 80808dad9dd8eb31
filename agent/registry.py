"""The device and asset registry: one SQLite file (created 0600, WAL) holding every device, its keys, its frame
counters, the join server's state (DevNonce, JoinNonce, the session it made), each device's MAC state and the queue of
downlinks; the assets (the streetlight, container or bridge a device measures: kind, location, calibration,
settings), the bindings asset <-> device with their from/to times, and the journal of swaps and retirements the agent
publishes.

An asset keeps its id (and so its MQTT topic) for life; devices come and go. A device is `provisioned` (known, bound to
no asset), `active` (bound to `asset_id`) or `retired` (its frames are rejected; `asset_id` is its last asset).
`swap` binds a new device to an asset and retires the old one, `undo_swap` reverses the asset's latest swap,
`retire_device` / `retire_asset` end a binding for good. Each writes a journal entry in the same transaction; the agent
publishes unpublished entries when it picks up the change (`unpublished_journal`, `mark_published`), so nothing is lost
while it is down. Cumulative readings (schema `cumulative = true`) continue across bindings: each binding gets an
offset per field when its device first reports it (`continue_cumulative`).

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
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator

log = logging.getLogger("dos_agent.registry")

#: Version of the table layout; `meta.schema_version`. Each entry of _MIGRATIONS moves the file one version up.
SCHEMA_VERSION = 3

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
    # 2 -> 3: assets, bindings with history, the swap journal; every v2 device's asset becomes an asset it is bound to
    """
    CREATE TABLE assets (
        asset_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'active',
        lat REAL,
        lon REAL,
        address TEXT,
        calibration TEXT NOT NULL DEFAULT '{}',
        settings TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        retired_at REAL
    );
    CREATE TABLE bindings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        asset_id TEXT NOT NULL,
        dev_eui TEXT NOT NULL,
        from_at REAL NOT NULL,
        to_at REAL,
        offsets TEXT,
        last_values TEXT
    );
    CREATE INDEX bindings_asset_id ON bindings (asset_id);
    CREATE INDEX bindings_dev_eui ON bindings (dev_eui);
    CREATE TABLE journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        asset_id TEXT NOT NULL,
        type TEXT NOT NULL,
        old_dev_eui TEXT,
        new_dev_eui TEXT,
        at REAL NOT NULL,
        published INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO assets (asset_id, kind, created_at)
        SELECT asset_id, MIN(kind), CAST(strftime('%s', 'now') AS REAL) FROM devices GROUP BY asset_id;
    INSERT INTO bindings (asset_id, dev_eui, from_at)
        SELECT asset_id, dev_eui, CAST(strftime('%s', 'now') AS REAL) FROM devices WHERE state = 'active'
    """,
)

#: How long a write waits for another process's write (e.g. an import) to finish.
BUSY_TIMEOUT_MS = 5000
#: Frame counter updates are written and committed once this many have piled up (and on every `flush`).
COMMIT_EVERY = 256

ACTIVATIONS = ("abp", "otaa")
DEVICE_STATES = ("provisioned", "active", "retired")
ASSET_STATES = ("active", "retired")
#: Journal entry types: `swap` (old -> new device), `undo` (a swap reversed: old is the device taken off again),
#: `retire` (the device ended, old_dev_eui), `retire_asset` (the asset ended, with its device if it had one),
#: `unbind` (the device was moved to another asset).
JOURNAL_TYPES = ("swap", "undo", "retire", "retire_asset", "unbind")
FCNT_RESET_POLICIES = ("reject", "accept")
#: States of a queued downlink: waiting for an uplink to answer, or sent confirmed and waiting for the device's ACK.
DOWNLINK_STATES = ("queued", "awaiting_ack")

_HEX = re.compile(r"[0-9a-fA-F]+")
#: An asset id is one MQTT topic level: no '/', '+', '#', no spaces.
_ASSET_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")

_REQUIRED = ("dev_eui", "asset_id", "kind", "activation")
#: Entry fields that say what to do rather than describe the device: `replace = true` swaps the device onto its asset.
_DIRECTIVES = ("replace",)
_OPTIONAL = ("dev_addr", "nwk_s_key", "app_s_key", "app_key", "join_eui", "fcnt_reset_policy")
_KEY_FIELDS = ("nwk_s_key", "app_s_key", "app_key")


class RegistryError(Exception):
    """The registry file cannot be used (wrong layout version, not a registry)."""


class AssetError(ValueError):
    """An asset or binding change that cannot be done (unknown asset or device, already bound, retired, ...); the
    message is one line saying what is wrong and what to do. `reason` is a short label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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


@dataclass(frozen=True, slots=True)
class Asset:
    """A thing in the city a device measures. `calibration` and `settings` go into the config of every device flashed
    for it; `lat`/`lon` in degrees (WGS84)."""

    asset_id: str
    kind: str
    state: str = "active"
    lat: float | None = None
    lon: float | None = None
    address: str | None = None
    calibration: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    retired_at: float | None = None


@dataclass(frozen=True, slots=True)
class Binding:
    """Device `dev_eui` served asset `asset_id` from `from_at` until `to_at` (None: it still does). `offsets` are the
    per-field offsets of cumulative readings under this binding (set at the field's first report)."""

    id: int
    asset_id: str
    dev_eui: str
    from_at: float
    to_at: float | None
    offsets: dict[str, float] | None = None


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One swap or retirement (type one of JOURNAL_TYPES), published by the agent as an asset event."""

    id: int
    asset_id: str
    type: str
    old_dev_eui: str | None
    new_dev_eui: str | None
    at: float
    published: bool = False


_COLUMNS = DeviceRecord.__slots__
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM devices"
_ASSET_COLUMNS = Asset.__slots__
_SELECT_ASSET = f"SELECT {', '.join(_ASSET_COLUMNS)} FROM assets"
_SELECT_BINDING = "SELECT id, asset_id, dev_eui, from_at, to_at, offsets FROM bindings"
_SELECT_JOURNAL = "SELECT id, asset_id, type, old_dev_eui, new_dev_eui, at, published FROM journal"


def _asset(row: tuple) -> Asset:
    values = dict(zip(_ASSET_COLUMNS, row))
    values["calibration"] = json.loads(values["calibration"])
    values["settings"] = json.loads(values["settings"])
    return Asset(**values)


def _binding(row: tuple) -> Binding:
    return Binding(*row[:5], json.loads(row[5]) if row[5] else None)


def _journal(row: tuple) -> JournalEntry:
    return JournalEntry(*row[:6], bool(row[6]))


def _create_private(path: Path) -> None:
    """Create the file with mode 0600 before SQLite opens it (SQLite gives its -wal/-shm files the same mode)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


@dataclass(slots=True)
class _Cumulative:
    """A binding's cumulative fields in memory: offset and last device value per field; `dirty` until written."""

    offsets: dict[str, float]
    last: dict[str, float]
    dirty: bool = False


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
        self._retired_by_addr: dict[int, list[DeviceRecord]] = {}
        self._open_bindings: dict[str, Binding] = {}  # DevEUI -> its open binding
        self._cumulative: dict[int, _Cumulative] = {}  # binding id -> offsets and last values in memory
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
        retired_by_addr: dict[int, list[DeviceRecord]] = {}
        for record in records:
            if record.dev_addr is not None and record.state in ("active", "retired"):
                holders = by_addr if record.state == "active" else retired_by_addr
                holders.setdefault(int(record.dev_addr, 16), []).append(record)
        self._by_addr, self._retired_by_addr = by_addr, retired_by_addr
        self._by_asset = {r.asset_id: r for r in records if r.state == "active"}
        self._open_bindings = {b.dev_eui: b for b in map(_binding, self._db.execute(
            _SELECT_BINDING + " WHERE to_at IS NULL"))}
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

    def retired_by_dev_addr(self, dev_addr: int) -> list[DeviceRecord]:
        """Retired devices that held this DevAddr last (their later frames are rejected as `retired_device`)."""
        return self._retired_by_addr.get(dev_addr, [])

    def device_for_asset(self, asset_id: str) -> DeviceRecord | None:
        """The device bound to an asset now, or None (no device, or the asset is retired)."""
        device = self._by_asset.get(asset_id)
        return None if device is None else self._by_eui.get(device.dev_eui)

    def dev_addrs_in_use(self) -> set[int]:
        """Every DevAddr held by a device of the registry (active or not)."""
        return {int(d.dev_addr, 16) for d in self._by_eui.values() if d.dev_addr is not None}

    def _put(self, updated: DeviceRecord) -> None:
        """Replace a device's cached record (same DevAddr) with `updated`."""
        self._by_eui[updated.dev_eui] = updated
        if updated.state == "active" and self._by_asset.get(updated.asset_id, updated).dev_eui == updated.dev_eui:
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
        if updated.state == "active" and self._by_asset.get(updated.asset_id, updated).dev_eui == updated.dev_eui:
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
        """Write and commit pending counter updates (only where the device is still in the same session) and the last
        cumulative values of each binding.

        False when the file could not be written (e.g. locked by another writer for longer than the busy timeout):
        the updates stay pending for the next flush, and the in-memory counters stay authoritative meanwhile."""
        dirty = [(binding_id, c) for binding_id, c in self._cumulative.items() if c.dirty]
        if self._unwritten or dirty:
            rows = [(fcnt, mac, eui, session) for (eui, session), (fcnt, mac) in self._unwritten.items()]
            try:
                with self._transaction():
                    self._db.executemany(
                        "UPDATE devices SET fcnt_up = ?, mac_state = ? WHERE dev_eui = ? AND session_id IS ?", rows
                    )
                    self._db.executemany(
                        "UPDATE bindings SET offsets = ?, last_values = ? WHERE id = ?",
                        [(json.dumps(c.offsets), json.dumps(c.last), binding_id) for binding_id, c in dirty],
                    )
            except sqlite3.Error as exc:
                log.warning("registry: %d counter update(s) not written yet: %s", len(rows) + len(dirty), exc)
                return False
            self._unwritten = {}
            for _binding_id, cumulative in dirty:
                cumulative.dirty = False
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

    def check_writable(self) -> None:
        """Take and release the write lock: raises sqlite3.Error now when the file cannot be written."""
        with self._transaction():
            pass

    @property
    def pending(self) -> int:
        """Counter updates recorded but not written to the file yet."""
        return self._pending

    # --- assets, bindings, swaps --------------------------------------------------------------------------------------

    def assets(self) -> list[Asset]:
        """Every asset, ordered by id."""
        return [_asset(row) for row in self._db.execute(_SELECT_ASSET + " ORDER BY asset_id")]

    def asset(self, asset_id: str) -> Asset | None:
        """The asset with this id, or None."""
        row = self._db.execute(_SELECT_ASSET + " WHERE asset_id = ?", (asset_id,)).fetchone()
        return None if row is None else _asset(row)

    def add_asset(self, asset: Asset) -> Asset:
        """Add an asset (AssetError when the id exists or a value is invalid); returns it as stored."""
        problem = validate_asset(asset)
        if problem:
            raise AssetError("invalid_asset", problem)
        with self._transaction():
            if self._db.execute("SELECT 1 FROM assets WHERE asset_id = ?", (asset.asset_id,)).fetchone():
                raise AssetError("asset_exists", f"asset {asset.asset_id} exists already; see `dos-edge assets show "
                                                 f"{asset.asset_id}`")
            self._insert_asset(asset)
        return self.asset(asset.asset_id)

    def update_asset(self, asset_id: str, lat: float | None = None, lon: float | None = None,
                     address: str | None = None, calibration: dict[str, Any] | None = None,
                     settings: dict[str, Any] | None = None) -> Asset:
        """Change an asset's place, or add to / change its calibration and settings (merged by name); devices flashed
        for it from now on get the new values. AssetError for an unknown or retired asset or an invalid value."""
        with self._transaction():
            asset = self._active_asset(asset_id)
            changed = replace(
                asset, lat=asset.lat if lat is None else lat, lon=asset.lon if lon is None else lon,
                address=asset.address if address is None else address,
                calibration={**asset.calibration, **(calibration or {})},
                settings={**asset.settings, **(settings or {})},
            )
            problem = validate_asset(changed)
            if problem:
                raise AssetError("invalid_asset", problem)
            self._db.execute(
                "UPDATE assets SET lat = ?, lon = ?, address = ?, calibration = ?, settings = ? WHERE asset_id = ?",
                (changed.lat, changed.lon, changed.address, json.dumps(changed.calibration, sort_keys=True),
                 json.dumps(changed.settings, sort_keys=True), asset_id))
        return changed

    def _insert_asset(self, asset: Asset) -> None:
        values = [getattr(asset, name) for name in _ASSET_COLUMNS]
        values[_ASSET_COLUMNS.index("calibration")] = json.dumps(asset.calibration, sort_keys=True)
        values[_ASSET_COLUMNS.index("settings")] = json.dumps(asset.settings, sort_keys=True)
        self._db.execute(f"INSERT INTO assets ({', '.join(_ASSET_COLUMNS)}) VALUES "
                         f"({', '.join('?' * len(_ASSET_COLUMNS))})", values)

    def bindings(self, asset_id: str | None = None, dev_eui: str | None = None) -> list[Binding]:
        """Bindings of an asset or of a device (or all), oldest first."""
        where, args = [], []
        if asset_id is not None:
            where.append("asset_id = ?")
            args.append(asset_id)
        if dev_eui is not None:
            where.append("dev_eui = ?")
            args.append(dev_eui.lower())
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return [_binding(row) for row in self._db.execute(_SELECT_BINDING + clause + " ORDER BY id", args)]

    def journal(self, asset_id: str | None = None) -> list[JournalEntry]:
        """Journal entries (of one asset, or all), oldest first."""
        clause, args = (" WHERE asset_id = ?", (asset_id,)) if asset_id is not None else ("", ())
        return [_journal(row) for row in self._db.execute(_SELECT_JOURNAL + clause + " ORDER BY id", args)]

    def unpublished_journal(self) -> list[JournalEntry]:
        """Journal entries the agent has not published yet, oldest first."""
        return [_journal(row) for row in self._db.execute(_SELECT_JOURNAL + " WHERE published = 0 ORDER BY id")]

    def mark_published(self, entry_ids: Iterable[int]) -> None:
        """Note journal entries as published (committed at once)."""
        with self._transaction():
            self._db.executemany("UPDATE journal SET published = 1 WHERE id = ?", [(i,) for i in entry_ids])

    def swap(self, asset_id: str, new_dev_eui: str, at: float, move: bool = False) -> JournalEntry:
        """Bind `new_dev_eui` to the asset and retire the device it had (if any): the asset's id, topic, calibration
        and settings stay, cumulative readings continue. A device bound to another asset is refused unless `move`,
        which unbinds it there first (that asset is left without a device). AssetError says why a swap is refused."""
        new_dev_eui = new_dev_eui.lower()
        self.flush()
        with self._transaction():
            asset = self._active_asset(asset_id)
            device = self._device_row(new_dev_eui)
            if device.kind != asset.kind:
                raise AssetError("wrong_kind", f"device {new_dev_eui} is a {device.kind} node, asset {asset_id} a "
                                               f"{asset.kind}; flash it with --kind {asset.kind} first")
            if device.state == "retired":
                raise AssetError("device_retired", f"device {new_dev_eui} is retired and cannot be bound again; "
                                                   "use a new device")
            current = self._open_binding_row("asset_id", asset_id)
            held = self._open_binding_row("dev_eui", new_dev_eui)
            if held is not None and held.asset_id == asset_id:
                raise AssetError("already_bound", f"device {new_dev_eui} is already bound to asset {asset_id}")
            if held is not None and not move:
                raise AssetError("bound_elsewhere", f"DevEUI {new_dev_eui} is bound to asset {held.asset_id}; retire "
                                                    "it there, or pass --move to move it to this asset")
            if held is not None:
                self._close_binding(held, at)
                self._write_journal(held.asset_id, "unbind", new_dev_eui, None, at)
            old_dev_eui = None
            if current is not None:
                old_dev_eui = current.dev_eui
                self._close_binding(current, at)
                self._set_device_state(old_dev_eui, "retired")
            self._open_binding(asset_id, new_dev_eui, at)
            entry = self._write_journal(asset_id, "swap", old_dev_eui, new_dev_eui, at)
        self._reload()
        return entry

    def undo_swap(self, asset_id: str, at: float) -> JournalEntry:
        """Reverse the asset's latest swap (made by mistake): the device it brought goes back to `provisioned`
        (unbound, usable elsewhere), the device it retired is active on the asset again under a new binding, so its
        frames are accepted again and cumulative readings go on from the asset's last value."""
        self.flush()
        with self._transaction():
            self._active_asset(asset_id)
            row = self._db.execute(_SELECT_JOURNAL + " WHERE asset_id = ? ORDER BY id DESC LIMIT 1",
                                   (asset_id,)).fetchone()
            last = None if row is None else _journal(row)
            if last is None or last.type != "swap":
                raise AssetError("nothing_to_undo", f"the last change of asset {asset_id} is not a swap "
                                                    f"({last.type if last else 'none'}); nothing to undo")
            if last.old_dev_eui is None:
                raise AssetError("nothing_to_undo", f"the last swap of asset {asset_id} bound its first device; "
                                                    f"retire {last.new_dev_eui} instead")
            old = self._device_row(last.old_dev_eui)
            if old.state != "retired" or self._open_binding_row("dev_eui", old.dev_eui) is not None:
                raise AssetError("nothing_to_undo", f"device {old.dev_eui} changed since the swap; undo by hand")
            current = self._open_binding_row("asset_id", asset_id)
            if current is not None:
                self._close_binding(current, at)
                self._set_device_state(current.dev_eui, "provisioned")
            self._open_binding(asset_id, old.dev_eui, at)
            entry = self._write_journal(asset_id, "undo", last.new_dev_eui, old.dev_eui, at)
        self._reload()
        return entry

    def retire_device(self, dev_eui: str, at: float) -> JournalEntry:
        """Retire a device for good: its binding ends, its later frames are rejected (`retired_device`); its asset
        stays and waits for a new device (`swap`)."""
        dev_eui = dev_eui.lower()
        self.flush()
        with self._transaction():
            device = self._device_row(dev_eui)
            if device.state == "retired":
                raise AssetError("device_retired", f"device {dev_eui} is retired already")
            held = self._open_binding_row("dev_eui", dev_eui)
            if held is not None:
                self._close_binding(held, at)
            self._set_device_state(dev_eui, "retired")
            entry = self._write_journal(device.asset_id, "retire", dev_eui, None, at)
        self._reload()
        return entry

    def retire_asset(self, asset_id: str, at: float) -> JournalEntry:
        """Retire an asset (taken out of service): its device is retired with it (frames rejected), no device can be
        bound to it again, downlinks to it fail as `unknown_asset`; its history stays."""
        self.flush()
        with self._transaction():
            self._active_asset(asset_id)
            current = self._open_binding_row("asset_id", asset_id)
            old_dev_eui = None
            if current is not None:
                old_dev_eui = current.dev_eui
                self._close_binding(current, at)
                self._set_device_state(old_dev_eui, "retired")
            self._db.execute("UPDATE assets SET state = 'retired', retired_at = ? WHERE asset_id = ?", (at, asset_id))
            entry = self._write_journal(asset_id, "retire_asset", old_dev_eui, None, at)
        self._reload()
        return entry

    def continue_cumulative(self, dev_eui: str, values: dict[str, float]) -> dict[str, float]:
        """The asset-level values of a device's cumulative readings: device value + its binding's offset. A binding's
        offset for a field is fixed at the field's first report: the asset's last value before the binding minus the
        device's own last value from an earlier binding (0 for a fresh device), so the asset's series goes on across
        swaps and moves. Last values are written with the next `flush`."""
        binding = self._open_bindings.get(dev_eui)
        if binding is None:
            return dict(values)
        state = self._cumulative.get(binding.id)
        if state is None:
            row = self._db.execute("SELECT last_values FROM bindings WHERE id = ?", (binding.id,)).fetchone()
            last = json.loads(row[0]) if row and row[0] else {}
            state = self._cumulative[binding.id] = _Cumulative(dict(binding.offsets or {}), last)
        totals = {}
        new_offset = False
        for name, value in values.items():
            if name not in state.offsets:
                state.offsets[name] = self._first_offset(binding, name)
                new_offset = True
            state.last[name] = value
            totals[name] = value + state.offsets[name]
        state.dirty = True
        self._pending += 1
        if new_offset:  # an offset is fixed once: committed now, not with the next group
            self.flush()
        return totals

    def _first_offset(self, binding: Binding, name: str) -> float:
        asset_total = device_before = 0.0
        for other_id, other in self._cumulative.items():  # unwritten last values of earlier bindings count too
            if other_id != binding.id and other.dirty:
                self.flush()
                break
        for offsets, last in self._db.execute(
                "SELECT offsets, last_values FROM bindings WHERE asset_id = ? AND id != ? ORDER BY id DESC",
                (binding.asset_id, binding.id)):
            last = json.loads(last) if last else {}
            if name in last:
                asset_total = last[name] + (json.loads(offsets) if offsets else {}).get(name, 0)
                break
        for (last,) in self._db.execute(
                "SELECT last_values FROM bindings WHERE dev_eui = ? AND id != ? ORDER BY id DESC",
                (binding.dev_eui, binding.id)):
            last = json.loads(last) if last else {}
            if name in last:
                device_before = last[name]
                break
        return asset_total - device_before

    def _active_asset(self, asset_id: str) -> Asset:
        row = self._db.execute(_SELECT_ASSET + " WHERE asset_id = ?", (asset_id,)).fetchone()
        if row is None:
            raise AssetError("unknown_asset", f"unknown asset {asset_id}; add it with `dos-edge assets add`")
        asset = _asset(row)
        if asset.state != "active":
            raise AssetError("asset_retired", f"asset {asset_id} is retired; add a new asset for a new installation")
        return asset

    def _device_row(self, dev_eui: str) -> DeviceRecord:
        row = self._db.execute(_SELECT + " WHERE dev_eui = ?", (dev_eui,)).fetchone()
        if row is None:
            raise AssetError("unknown_device", f"unknown device {dev_eui}; register it first (flash.sh or "
                                               "`dos-edge devices import`)")
        return DeviceRecord(*row)

    def _open_binding_row(self, column: str, value: str) -> Binding | None:
        row = self._db.execute(_SELECT_BINDING + f" WHERE {column} = ? AND to_at IS NULL", (value,)).fetchone()
        return None if row is None else _binding(row)

    def _close_binding(self, binding: Binding, at: float) -> None:
        self._db.execute("UPDATE bindings SET to_at = ? WHERE id = ?", (at, binding.id))

    def _open_binding(self, asset_id: str, dev_eui: str, at: float) -> None:
        self._db.execute("INSERT INTO bindings (asset_id, dev_eui, from_at) VALUES (?, ?, ?)", (asset_id, dev_eui, at))
        self._db.execute("UPDATE devices SET asset_id = ?, state = 'active' WHERE dev_eui = ?", (asset_id, dev_eui))

    def _set_device_state(self, dev_eui: str, state: str) -> None:
        self._db.execute("UPDATE devices SET state = ? WHERE dev_eui = ?", (state, dev_eui))

    def _write_journal(self, asset_id: str, entry_type: str, old: str | None, new: str | None,
                       at: float) -> JournalEntry:
        cursor = self._db.execute(
            "INSERT INTO journal (asset_id, type, old_dev_eui, new_dev_eui, at) VALUES (?, ?, ?, ?, ?)",
            (asset_id, entry_type, old, new, at))
        return JournalEntry(cursor.lastrowid, asset_id, entry_type, old, new, at)

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

    def import_devices(self, entries: Iterable[object], source: str = "import",
                       at: float | None = None) -> ImportReport:
        """Validate and store device entries (dicts of the provisioning fields); all or nothing.

        A new device is bound to its asset (the asset is created from the device's kind when it does not exist). A
        device for an asset that has another device is refused unless the entry says `replace = true`, which swaps
        it in (`swap`); a device bound to another asset is refused (move it with `dos-edge swap --move`)."""
        entries = list(entries)
        records, problems = validate_devices(entries)
        if problems:
            raise ProvisioningError(source, problems)
        replacing = {e["dev_eui"].lower() for e in entries if isinstance(e, dict) and e.get("replace") is True}
        at = _now() if at is None else at
        self.flush()
        added: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        with self._transaction():
            for record in records:
                row = self._db.execute(_SELECT + " WHERE dev_eui = ?", (record.dev_eui,)).fetchone()
                old = DeviceRecord(*row) if row else None
                problem = self._binding_problem(old, record, record.dev_eui in replacing)
                if problem:
                    problems.append(f"device {record.dev_eui}: {problem}")
                    continue
                new = _merge(old, record)
                if old is None:
                    added.append(new.dev_eui)
                    new = replace(new, state="provisioned")
                elif new == old:
                    unchanged.append(new.dev_eui)
                    continue
                else:
                    updated.append(new.dev_eui)
                self._db.execute(
                    f"INSERT OR REPLACE INTO devices ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                    tuple(getattr(new, name) for name in _COLUMNS),
                )
                if old is None or old.state == "provisioned":
                    self._bind_imported(new, at)
            if problems:
                raise ProvisioningError(source, problems)
        self._reload()
        return ImportReport(tuple(added), tuple(updated), tuple(unchanged))

    def _binding_problem(self, old: DeviceRecord | None, new: DeviceRecord, replacing: bool) -> str | None:
        """Why an imported device cannot be bound to its asset, or None."""
        if old is not None and old.state == "active" and old.asset_id != new.asset_id:
            return (f"DevEUI already bound to asset {old.asset_id}; move it with `dos-edge swap --asset "
                    f"{new.asset_id} --new-device {new.dev_eui} --move`")
        if old is not None and old.state == "retired" and old.asset_id != new.asset_id:
            return f"retired device (last on asset {old.asset_id}) cannot be bound again"
        row = self._db.execute("SELECT kind, state FROM assets WHERE asset_id = ?", (new.asset_id,)).fetchone()
        if row is not None and row[0] != new.kind:
            return f"asset {new.asset_id} is a {row[0]}, not a {new.kind}"
        if row is not None and row[1] != "active" and (old is None or old.state == "provisioned"):
            return f"asset {new.asset_id} is retired"
        holder = self._open_binding_row("asset_id", new.asset_id)
        if (old is None or old.state == "provisioned") and holder is not None and not replacing:
            return (f"asset {new.asset_id} is bound to device {holder.dev_eui}; set replace = true or run "
                    f"`dos-edge swap --asset {new.asset_id} --new-device {new.dev_eui}`")
        return None

    def _bind_imported(self, device: DeviceRecord, at: float) -> None:
        """Bind a newly imported device to its asset (inside the import's transaction), swapping out a holder."""
        if not self._db.execute("SELECT 1 FROM assets WHERE asset_id = ?", (device.asset_id,)).fetchone():
            self._insert_asset(Asset(device.asset_id, device.kind, created_at=at))
        holder = self._open_binding_row("asset_id", device.asset_id)
        if holder is not None:
            self._close_binding(holder, at)
            self._set_device_state(holder.dev_eui, "retired")
        self._open_binding(device.asset_id, device.dev_eui, at)
        if holder is not None:
            self._write_journal(device.asset_id, "swap", holder.dev_eui, device.dev_eui, at)


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


def _now() -> float:
    return time.time()


def validate_asset(asset: Asset) -> str | None:
    """The first problem of an asset's values (one line), or None."""
    if not isinstance(asset.asset_id, str) or not _ASSET_ID.fullmatch(asset.asset_id):
        return f"asset id {asset.asset_id!r}: expected 1-64 characters of A-Z a-z 0-9 . _ : -"
    if not isinstance(asset.kind, str) or not _KIND.fullmatch(asset.kind):
        return f"kind {asset.kind!r}: expected a lowercase name such as streetlight"
    if asset.lat is not None and not -90 <= asset.lat <= 90:
        return f"lat {asset.lat}: expected -90..90 degrees"
    if asset.lon is not None and not -180 <= asset.lon <= 180:
        return f"lon {asset.lon}: expected -180..180 degrees"
    for name in ("calibration", "settings"):
        table = getattr(asset, name)
        if not isinstance(table, dict) or not all(isinstance(v, (int, float, bool, str)) for v in table.values()):
            return f"{name}: expected NAME=VALUE pairs of numbers, booleans or text"
    return None


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
        for name in sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL) - set(_DIRECTIVES)):
            problems.append(f"{where}: {name}: unknown field")
        if "replace" in entry and not isinstance(entry["replace"], bool):
            problems.append(f"{where}: replace: expected true or false")
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
