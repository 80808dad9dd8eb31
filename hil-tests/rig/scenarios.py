"""Scenario files: hil-tests/scenarios/<name>.toml, one scenario a file, in virtual seconds.

A file holds `description` (one line for people: what happens when), `kit` (the sensor kit: the node kind) and any keys
of dos_rig.sensors.Scenario (see its module docstring for each key and its unit). TOML has no null: a key left out takes
the Scenario default. `load_scenario(name_or_path)` gives the dict the rig's Scenario takes (description dropped), after
checking every key; a bad name, file or key raises ScenarioError."""
from __future__ import annotations

import tomllib
from pathlib import Path

from dos_rig.sensors import Scenario

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "scenarios"
REQUIRED_KEYS = ("description", "kit")


class ScenarioError(ValueError):
    """A scenario name that has no file, or a file that is not a valid scenario."""


def available_scenarios() -> dict[str, str]:
    """Scenario name -> description of every file in SCENARIO_DIR."""
    return {path.stem: _read(path)["description"] for path in sorted(SCENARIO_DIR.glob("*.toml"))}


def scenario_path(name_or_path: str | Path) -> Path:
    """The file of a scenario name (a file in SCENARIO_DIR) or of a path to a .toml file."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text:
        path = Path(text)
    else:
        path = SCENARIO_DIR / f"{text}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
        raise ScenarioError(f"no scenario {text!r} ({path} does not exist); known scenarios: {known}")
    return path


def _read(path: Path) -> dict:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise ScenarioError(f"{path}: missing {missing}")
    return data


def load_scenario(name_or_path: str | Path) -> dict:
    """The scenario values (for Scenario / Rig.add_board / make_node) of a scenario name or file."""
    path = scenario_path(name_or_path)
    values = {key: value for key, value in _read(path).items() if key != "description"}
    try:
        Scenario(values)
    except ValueError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    return values
