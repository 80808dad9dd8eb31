"""An app's settings: config.json values overlaid with the changes the network sent in remote configuration downlinks.

Remote changes persist in the store (key "settings") so they survive a reboot. Each is kept with the config.json value it
replaced: when a technician later installs a config.json whose value differs from that one, the installed value wins (it
is the newer decision) and the remote change is dropped. Values are checked against the app's ranges, which are those of
the schema's config message (a test keeps them equal).
"""
from config import ConfigError, section


def _valid(value, low, high):
    if low is None:
        return value is True or value is False
    return type(value) in (int, float) and low <= value <= high


class Settings:
    """The settings an app declares in `spec`, ((name, default, low, high), ...) with low None for a bool; interval_s
    comes from the top level of config.json, the others from its "settings" section. `values` holds the current ones;
    `dropped` names the remote changes an installed config.json overrode at boot."""

    def __init__(self, config, store, spec):
        self.store, self.spec = store, spec
        self.values, self.dropped = {}, []
        self._remote = {}  # name -> [value, the config.json value it replaced]
        stored = store.get("settings")
        stored = stored if type(stored) is dict else {}
        settings = section(config, "settings")
        for name, default, low, high in spec:
            table, where = (config, "config") if name == "interval_s" else (settings, "settings")
            installed = table.get(name, default)
            if not _valid(installed, low, high):
                kind = "true or false" if low is None else "a number in [%s, %s]" % (low, high)
                raise ConfigError("%s.%s must be %s" % (where, name, kind))
            entry = stored.get(name)
            if type(entry) is list and len(entry) == 2 and entry[1] == installed and _valid(entry[0], low, high):
                self._remote[name] = entry
                self.values[name] = entry[0]
            else:
                if entry is not None:
                    self.dropped.append(name)
                self.values[name] = installed
        if self.dropped:
            self._save()

    def apply(self, changes):
        """Apply {name: value} from a downlink. Returns ([(name, old, new)] applied, [(name, why)] refused); the
        applied ones are saved at once. A value equal to the current one is neither."""
        applied, refused = [], []
        for name, value in changes.items():
            spec = None
            for candidate in self.spec:
                if candidate[0] == name:
                    spec = candidate
            if spec is None:
                refused.append((name, "not a setting of this node"))
            elif not _valid(value, spec[2], spec[3]):
                refused.append((name, "%r out of range" % (value,)))
            elif value != self.values[name]:
                old = self.values[name]
                base = self._remote[name][1] if name in self._remote else old
                self._remote[name] = [value, base]
                self.values[name] = value
                applied.append((name, old, value))
        if applied:
            self._save()
        return applied, refused

    def _save(self):
        self.store.put("settings", self._remote)
        self.store.flush()
