"""The agent's TOML configuration file (`dos-edge agent run --config FILE`) and how it meets the command line.

Every `AgentConfig` field is a key of the file, found by its name: a field named `<section>_<key>` (for a known section
such as `mqtt`, `udp`, `http`, `outbox`) is `key` in table `[section]`, a few older names have their table given in
`FIELD_SECTIONS`, and the rest are top-level keys. Values are checked against the field's type (and range, for the
numbers in `OPTION_RANGES`); a wrong value or an unknown key is a `ConfigError` naming the file and the key. Relative
paths are taken from the config file's folder. `[log]` holds `level` and `format` (`text` key=value lines, or `json`
lines). A file holding a secret (a field whose name says `password`) must not be readable by group or others.

Precedence: an option given on the command line beats the file, which beats `AgentConfig`'s defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI builds its parser with this module; the agent itself is imported only when used
    from dos_agent.app import AgentConfig

#: Tables whose name starts a field name (`mqtt_host` is `host` in `[mqtt]`).
SECTIONS = ("udp", "mqtt", "http", "outbox", "outputs", "chirpstack", "rak3172", "session")
#: Fields whose table is not the start of their name.
FIELD_SECTIONS = {"prefix": "mqtt", "max_inflight": "mqtt", "dedup_ms": "session", "net_id": "session",
                  "adr_margin_db": "session", "homeassistant_discovery_prefix": "outputs"}
#: Inclusive ranges of numeric options.
OPTION_RANGES: dict[str, tuple[float, float]] = {
    "udp_port": (0, 65535), "mqtt_port": (1, 65535), "http_port": (0, 65535), "dedup_ms": (0, 10_000),
    "net_id": (0, 0xFFFFFF), "adr_margin_db": (0, 30), "chirpstack_port": (1, 65535), "outbox_max_rows": (1, 2**63 - 1),
    "outbox_max_age_s": (1, float("inf")), "rak3172_frequency_hz": (150_000_000, 960_000_000), "rak3172_sf": (7, 12),
    "rak3172_bw_khz": (125, 500),
}
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
#: Command-line options that set two fields from one HOST:PORT value.
_ADDRESS_OPTIONS = {"udp": ("udp_host", "udp_port"), "http": ("http_host", "http_port")}


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """What `dos-edge agent run` runs with: the agent's configuration and how it logs."""

    agent: AgentConfig
    log_level: str = "info"
    log_format: str = "text"


def file_key(field_name: str) -> tuple[str | None, str]:
    """(table or None for top level, key) of an AgentConfig field in the config file."""
    if field_name in FIELD_SECTIONS:
        return FIELD_SECTIONS[field_name], field_name
    section, sep, rest = field_name.partition("_")
    if sep and section in SECTIONS:
        return section, rest
    return None, field_name


def _dotted(section: str | None, key: str) -> str:
    return f"{section}.{key}" if section else key


def _fields() -> dict[str, Any]:
    """AgentConfig field name -> its resolved type."""
    from dos_agent.app import AgentConfig

    hints = typing.get_type_hints(AgentConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(AgentConfig)}


def _is_secret(field_name: str) -> bool:
    return "password" in field_name


def _convert(value: object, kind: Any, where: str, base: Path) -> object:
    """The TOML value as the field type `kind` wants it; raises ConfigError naming `where`."""
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _convert(value, options[0], where, base)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if kind is Path:
        if isinstance(value, str) and value:
            return base / Path(value).expanduser()
        raise ConfigError(f"{where}: expected a path (a non-empty string), got {value!r}")
    raise ConfigError(f"{where}: the agent's option type {kind} cannot be read from a config file")


def check_ranges(values: Mapping[str, object], source: str) -> None:
    """Raise ConfigError if a numeric option is outside its range."""
    for name, value in values.items():
        bounds = OPTION_RANGES.get(name)
        if bounds is not None and isinstance(value, (int, float)) and not bounds[0] <= value <= bounds[1]:
            where = _dotted(*file_key(name))
            raise ConfigError(f"{source}: {where}: {value!r} is outside {bounds[0]}..{bounds[1]}")


def parse_config(text: str, source: str = "<config>",
                 base: Path = Path(".")) -> tuple[dict[str, object], dict[str, str]]:
    """(AgentConfig field values, {"log_level", "log_format"}) of a config file's text; raises ConfigError."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    fields = _fields()
    by_key = {file_key(name): name for name in fields}
    values: dict[str, object] = {}
    logging_options: dict[str, str] = {}
    for top_key, top_value in document.items():
        if top_key == "log":
            logging_options = _logging_table(top_value, source)
            continue
        if isinstance(top_value, dict):
            entries = [((top_key, key), value) for key, value in top_value.items()]
        else:
            entries = [((None, top_key), top_value)]
        for (section, key), value in entries:
            where = f"{source}: {_dotted(section, key)}"
            name = by_key.get((section, key))
            if name is None:
                known = sorted(_dotted(*k) for k in by_key if k[0] == section)
                hint = f" (known here: {', '.join(known)})" if known else ""
                raise ConfigError(f"{where}: unknown key{hint}")
            values[name] = _convert(value, fields[name], where, base)
    check_ranges(values, source)
    return values, logging_options


def _logging_table(table: object, source: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: log: expected a table [log]")
    allowed = {"level": LOG_LEVELS, "format": LOG_FORMATS}
    options = {}
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError(f"{source}: log.{key}: unknown key (known here: log.format, log.level)")
        if value not in allowed[key]:
            raise ConfigError(f"{source}: log.{key}: expected one of {', '.join(allowed[key])}, got {value!r}")
        options[f"log_{key}"] = value
    return options


def load_config(path: Path) -> tuple[dict[str, object], dict[str, str]]:
    """`parse_config` of a file; a file holding a password must be 0600 (or stricter)."""
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {getattr(exc, 'strerror', None) or exc}") from None
    values, logging_options = parse_config(text, str(path), path.parent)
    secrets = sorted(_dotted(*file_key(name)) for name in values if _is_secret(name))
    if secrets and mode & 0o077:
        raise ConfigError(f"{path}: holds {', '.join(secrets)} but is readable by others (mode {mode & 0o777:o}); "
                          f"run chmod 600 {path}")
    return values, logging_options


class StoreGiven(argparse.Action):
    """argparse's plain store that also notes the option in `namespace.given`, so the values given on the command
    line (and only those) override the config file. Register it on a parser as its "store" action."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        namespace.given = getattr(namespace, "given", frozenset()) | {self.dest}


def use_given_tracking(parser: argparse.ArgumentParser) -> None:
    """Make every plain option added to `parser` from now on note itself as given (see StoreGiven)."""
    parser.register("action", None, StoreGiven)
    parser.register("action", "store", StoreGiven)
    parser.set_defaults(given=frozenset())


def resolve(args: argparse.Namespace) -> RunSettings:
    """The run settings from `args.config` (if any) overridden by the options given on the command line.

    Raises ConfigError (a bad file, or no registry anywhere)."""
    values: dict[str, object] = {}
    logging_options: dict[str, str] = {}
    if args.config is not None:
        values, logging_options = load_config(args.config)
    fields = _fields()
    for dest in getattr(args, "given", frozenset()):
        given = getattr(args, dest)
        if dest in _ADDRESS_OPTIONS:
            values.update(zip(_ADDRESS_OPTIONS[dest], given))
        elif dest in ("log_level", "log_format"):
            logging_options[dest] = given
        elif dest in fields:
            values[dest] = given
    if values.get("registry") is None:
        raise ConfigError("no registry: give --registry or `registry = ...` in the config file")
    check_ranges(values, "command line")
    from dos_agent.app import AgentConfig

    try:
        agent = AgentConfig(**values)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid agent configuration: {exc}") from None
    return RunSettings(agent, **logging_options)


def public_view(settings: RunSettings) -> dict[str, object]:
    """The resolved settings as the config file would spell them, secrets replaced by "<set>" (for --check-config)."""
    view: dict[str, object] = {}
    for field in dataclasses.fields(settings.agent):
        value = getattr(settings.agent, field.name)
        if _is_secret(field.name) and value:
            value = "<set>"
        elif isinstance(value, Path):
            value = str(value)
        view[_dotted(*file_key(field.name))] = value
    view["log.level"] = settings.log_level
    view["log.format"] = settings.log_format
    return view


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception's traceback when there is one)."""

    def format(self, record: logging.LogRecord) -> str:  # noqa: D102
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str) -> None:
    """Root logging to stderr, as key=value text lines or JSON lines."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonLineFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
