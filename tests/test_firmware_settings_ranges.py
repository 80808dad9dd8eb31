"""Every app's settings (name, default, low, high) in micropython are the ranges of its kind's schema "config" message,
so a setting from config.json and the same setting from a downlink are held to one range."""
import json

import pytest

from dos_codecs.schema import available_kinds, load_schema
from firmware_support import run_micropython


@pytest.mark.parametrize("kind", available_kinds())
def test_app_setting_ranges_are_the_schema_ranges(kind):
    # JSON text (firmware/settings.py)
    out = run_micropython(f"from apps.{kind}_settings import SETTINGS\nprint(SETTINGS)")
    declared = {name: (default, low, high) for name, default, low, high in json.loads(out)}
    fields = {f.name: f for f in load_schema(kind).message("config").fields}
    assert set(declared) == set(fields)
    for name, (default, low, high) in declared.items():
        if fields[name].type == "bool":
            assert (low, high) == (None, None) and default in (True, False), name
        else:
            assert (low, high) == (fields[name].min, fields[name].max) and low <= default <= high, name
