"""The board's config.json (written by the installer): loading and typed reads whose errors name the setting, never a
key's value."""
import json

REQUIRED = ("board", "kind", "asset_id", "activation", "interval_s")


class ConfigError(ValueError):
    """config.json is missing, unreadable or holds a bad value; the message says which."""


def load_config(path="config.json"):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ConfigError(path + " is missing") from None
    try:
        config = json.loads(text)
    except ValueError:
        raise ConfigError(path + " is not valid JSON") from None
    if not isinstance(config, dict):
        raise ConfigError(path + " does not hold a JSON object")
    for key in REQUIRED:
        if key not in config:
            raise ConfigError("%s has no %s" % (path, key))
    return config


def hex_bytes(table, key, size):
    """table[key] as bytes: it must be a string of 2*size hex digits."""
    value = table.get(key)
    if not isinstance(value, str) or len(value) != 2 * size:
        raise ConfigError("%s must be %d hex digits" % (key, 2 * size))
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ConfigError("%s must be %d hex digits" % (key, 2 * size)) from None


def number(table, key, default, low, high, where="settings"):
    """table[key] (or default) as a number in [low, high]."""
    value = table.get(key, default)
    if type(value) not in (int, float) or not low <= value <= high:
        raise ConfigError("%s.%s must be a number in [%s, %s]" % (where, key, low, high))
    return value


def battery_calibration(calibration, divider):
    """(battery_divider, battery_empty_v, battery_full_v) of config.json's calibration section; `divider` is the
    board's."""
    divider = number(calibration, "battery_divider", divider, 1, 100, "calibration")
    empty_v = number(calibration, "battery_empty_v", 3.3, 0, 60, "calibration")
    return divider, empty_v, number(calibration, "battery_full_v", 4.2, empty_v + 0.01, 60, "calibration")


def lorawan_options(config):
    """(activation: "abp" or "otaa", data_rate: 0..5 (default 5), adr: default true) of config.json."""
    activation = config.get("activation")
    if activation not in ("abp", "otaa"):
        raise ConfigError("activation %r is not supported (abp, otaa)" % (activation,))
    return activation, int(number(config, "data_rate", 5, 0, 5, "config")), flag(config, "adr", True, "config")


def section(config, name):
    """config[name] as a dict (empty if absent)."""
    value = config.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(name + " must be a JSON object")
    return value


def flag(table, key, default, where="settings"):
    """table[key] (or default) as a bool."""
    value = table.get(key, default)
    if value is not True and value is not False:
        raise ConfigError("%s.%s must be true or false" % (where, key))
    return value
