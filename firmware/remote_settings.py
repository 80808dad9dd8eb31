"""A "config" downlink (FPort 3) applied to an app's settings (settings.py has what they are and how they persist):
loaded for the downlink once cbor_decode.py has decoded it (apps.runtime.apply_config) and unloaded after."""
import json

from apps.runtime import valid_setting
from cbor import CborError


def apply(values, store, spec, changes):
    """Apply {name: value} from a downlink to `values` (settings.load()'s). Returns ([(name, old, new)] applied,
    [(name, why)] refused); the applied ones are saved at once. A value equal to the current one is neither."""
    remote = store.get("settings")
    remote = remote if type(remote) is dict else {}
    applied, refused = [], []
    for name, value in changes.items():
        start = spec.find('["%s"' % name)  # its entry alone is parsed: no copy of the whole table in the heap
        if start < 0:
            refused.append((name, "not a setting of this node"))
            continue
        _name, _default, low, high = json.loads(spec[start:spec.index("]", start) + 1])
        if not valid_setting(value, low, high):
            refused.append((name, "%r out of range" % (value,)))
        elif value != values[name]:
            old = values[name]
            base = remote[name][1] if name in remote else old
            remote[name] = [value, base]
            values[name] = value
            applied.append((name, old, value))
    if applied:
        store.put("settings", remote)
        store.flush()
    return applied, refused


def configure(values, store, spec, decoded, fcnt):
    """Apply a decoded "config" downlink at once; returns its log lines (one per applied, refused or unknown setting).
    `decoded`: cbor_decode.decode_message's (name, changes, unknown keys), or the CborError it raised; `fcnt`: the
    downlink's FCntDown for the lines ("?" when the radio did not report it)."""
    if isinstance(decoded, CborError):
        return ["config downlink fcnt %s refused: %s" % (fcnt, decoded)]
    _name, changes, unknown = decoded
    applied, refused = apply(values, store, spec, changes)
    lines = []  # by loops: a comprehension's code would be loaded with this module
    for name, old, new in applied:
        lines.append("config: %s %s -> %s (downlink fcnt %s)" % (name, old, new, fcnt))
    for name, why in refused:
        lines.append("config: %s not applied: %s (downlink fcnt %s)" % (name, why, fcnt))
    for key in unknown:
        lines.append("config: unknown key %s ignored (downlink fcnt %s)" % (key, fcnt))
    return lines
