"""An app's settings: config.json values overlaid with the changes the network sent in remote configuration downlinks.

Remote changes persist in the store (key "settings": {name: [value, the config.json value it replaced]}) so they survive
a reboot. When a technician later installs a config.json whose value differs from the one a change replaced, the
installed value wins (it is the newer decision) and the remote change is dropped. Values are checked against the app's
ranges, which are those of the schema's config message (a test keeps them equal).

An app declares its settings as JSON text, `[[name, default, low, high], ...]` with low and high null for a bool, in
apps/<kind>_settings.py (SETTINGS): one string takes a fraction of the heap a tuple of tuples of boxed floats does, and
its module is loaded only while the settings are read at boot and while a config downlink is applied.
This module is loaded at boot (start(), called by the app as it starts) and unloaded after; a config downlink's
changes are applied by remote_settings.py, loaded for that. What stays in the heap is the app's {name: value} dict
and the store's "settings" entry.
"""
import json

from apps.runtime import valid_setting
from modules import unload


def start(config, store, kind):
    """The `kind` app's settings at boot, the last step of its start (load, then the boot banner): their {name: value}
    dict. config.py is unloaded first (config.json has been read; its "settings" section is checked here), this module
    and apps/<kind>_settings.py after."""
    from config import section

    settings = section(config, "settings")
    del section  # the last reference to its module's code
    unload("config")
    spec = __import__("apps.%s_settings" % kind, None, None, ("SETTINGS",)).SETTINGS
    try:
        values, dropped = load(config, settings, store, spec)
        print_banner(values, dropped, spec)
        return values
    finally:
        unload("apps.%s_settings" % kind)
        unload("settings")


def load(config, settings, store, spec):
    """(values, dropped) at boot: {name: value} of every setting in `spec` (interval_s from the top level of
    config.json, the others from its "settings" section `settings` (config.section's), a kept remote change over
    either) and the names of the remote changes an installed config.json overrode (dropped from the store at once).
    ConfigError for an installed value out of range."""
    values, dropped, remote = {}, [], {}
    stored = store.get("settings")
    stored = stored if type(stored) is dict else {}
    for name, default, low, high in json.loads(spec):
        table, where = (config, "config") if name == "interval_s" else (settings, "settings")
        installed = table.get(name, default)
        if not valid_setting(installed, low, high):
            from config import ConfigError  # loaded for the error only: config.py is unloaded while settings load

            kind = "true or false" if low is None else "a number in [%s, %s]" % (low, high)
            raise ConfigError("%s.%s must be %s" % (where, name, kind))
        entry = stored.get(name)
        if type(entry) is list and len(entry) == 2 and entry[1] == installed and valid_setting(entry[0], low, high):
            remote[name] = entry
            values[name] = entry[0]
        else:
            if entry is not None:
                dropped.append(name)
            values[name] = installed
    if remote != stored:  # the remote changes still in force, and nothing else, are what apply() saves
        store.put("settings", remote)
    if dropped:
        store.flush()
    return values, dropped


def print_banner(values, dropped, spec):
    """The boot lines: remote settings a newly installed config.json overrode, then every setting in force."""
    for name in dropped:
        print("config: remote %s dropped: config.json was installed with another value (%s)" % (name, values[name]))
    print("settings:", end="")
    for entry in json.loads(spec):  # piece by piece: no line-long string at boot's high-water mark
        print(" %s=%s" % (entry[0], values[entry[0]]), end="")
    print()
