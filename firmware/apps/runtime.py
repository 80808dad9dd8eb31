"""What every node app shares: sending a message (the log lines of how the send went and of joins and downlinks are
written by apps/network_events.py, loaded after each send; a FPort 3 "config" downlink is applied at once), random
offsets that keep nodes powered up together from colliding, the reporting loop (one reading per interval slot; a failed
reading is logged, RESET_AFTER_FAILURES in a row reset the board; control work between readings), the battery
(voltage, low flag with hysteresis, DevStatus level), routine readings fitted into PAYLOAD_BUDGET bytes (slow fields
take turns), and alarms: an episode per alarm condition, its "alarm" message sent at once as a confirmed uplink and
again with every reading until the network acknowledged it. An app's settings are read at boot by settings.py."""
import os

import machine
from micropython import const

from cbor import CborError, entry_bytes
from modules import unload
from schema_v1 import MESSAGES

_RESET_AFTER_FAILURES = const(5)  # consecutive failed readings before the board resets itself
_BOOT_SPREAD_MS = const(30000)  # the first reading comes within this long after boot
_PAYLOAD_BUDGET = const(24)  # bytes of CBOR for a routine reading (SF12 at EU868 DR0 carries 51)
_CONTROL_RETRY_MS = const(10000)  # a failed control step between readings is tried again after this long
BATTERY_HYSTERESIS_V = 0.1  # battery_low clears only this far above battery_low_v


def measure_battery(app, low_v):
    """The voltage now of the app's battery, app.battery (the board, and battery_divider, battery_empty_v and
    battery_full_v of config.battery_calibration); updates app.battery_low against the limit low_v: set below it,
    cleared only BATTERY_HYSTERESIS_V above it."""
    battery = app.battery
    volts = battery[0].battery_volts(battery[1])
    app.battery_low = volts < (low_v + BATTERY_HYSTERESIS_V if app.battery_low else low_v)
    return volts


def battery_level(battery, volts):
    """The DevStatusAns battery byte for `volts` of `battery` (an app's: measure_battery()): 1 (battery_empty_v or
    less) .. 254 (battery_full_v or more), 255 unknown."""
    if volts is None:
        return 255
    _board, _divider, empty_v, full_v = battery
    return max(1, min(254, 1 + round(253 * (volts - empty_v) / (full_v - empty_v))))


def over_limit(was_over, value, limit, hysteresis):
    """Whether `value` is over `limit`, with hysteresis: over above limit, and back only below limit - hysteresis."""
    return value > (limit - hysteresis if was_over else limit)


def alarm_due(app, holds, i=0):
    """Feed whether the app's alarm condition i holds now; returns whether its alarm is due. An app keeps its
    conditions at bit i of two int masks (no object per condition): app.alarms_active while condition i holds (an
    episode), app.alarms_acked once the network acknowledged its alarm, which is then not due again within the
    episode."""
    bit = 1 << i
    if holds:
        app.alarms_active |= bit
    else:
        app.alarms_active &= ~bit
        app.alarms_acked &= ~bit
    return bool(app.alarms_active & ~app.alarms_acked & bit)


def send_message(node, app, kind, message, confirmed, line):
    """Send one message of the `kind` app `app`, (fport, payload) from cbor.encode_reading; returns whether the
    network acknowledged it. Once the exchange is over, apps/network_events.py (loaded for that) prints the join's
    lines, "`line` -> how the send went" and the ignored downlinks' lines, and a "config" downlink is applied to
    app.settings at once (apply_config). The app encodes the message and formats its line before, so no dict of
    values is held while the exchange runs."""
    events = node.send(message[0], message[1], confirmed)
    from apps.network_events import report

    try:
        configs, acked = report(events, kind, line)
    finally:
        unload("apps.network_events")
    del report, events  # report: the last reference to its module's code, freed before a config is decoded
    for payload, fcnt in configs:
        for text in apply_config(kind, app.settings, app.store, payload, fcnt):
            print(text)
    return acked


def send_alarm(node, app, kind, message, reported, line):
    """Send an "alarm" message (send_message) at once as a confirmed uplink; once the network acknowledged it, the
    alarm conditions it reports (the bit mask `reported`, alarm_due's bits) are no longer due (until acknowledged it
    goes again with the next reading)."""
    if send_message(node, app, kind, message, True, line):
        app.alarms_acked |= reported


def fit_reading(kind, values, slow_fields, first_slow):
    """(the values to send, the slow field to start with next time): every field but the slow ones, then slow fields
    from slow_fields[first_slow] on, in turn, while the "reading" payload stays within PAYLOAD_BUDGET bytes; the first
    one left out leads the next reading. Each app keeps its other fields small enough that at least one slow field
    always fits (a test checks every kind with every field at its extreme)."""
    chosen, size = {}, 1  # the map head
    for name, value in values.items():
        if name not in slow_fields:
            chosen[name] = value
            size += entry_bytes(kind, "reading", name, value)
    left_out = None
    for i in range(len(slow_fields)):
        index = (first_slow + i) % len(slow_fields)
        name = slow_fields[index]
        entry = entry_bytes(kind, "reading", name, values[name])
        if size + entry <= _PAYLOAD_BUDGET:
            chosen[name] = values[name]
            size += entry
        elif left_out is None:
            left_out = index
    return chosen, first_slow if left_out is None else left_out


def valid_setting(value, low, high):
    """Whether `value` is in a setting's range: [low, high] for a number, a bool when low is None (a spec's entry:
    settings.py at boot, remote_settings.py for a config downlink)."""
    if low is None:
        return value is True or value is False
    return type(value) in (int, float) and low <= value <= high


def apply_config(kind, values, store, payload, fcnt):
    """Apply a "config" downlink payload to the settings `values` of the `kind` app (its ranges: the SETTINGS of
    apps/<kind>_settings.py) at once; returns its log lines (`fcnt` as the lines show it). The payload is decoded by
    cbor_decode.py, then applied by remote_settings.py with the ranges: each loaded for its step and unloaded after,
    cbor_decode.py and remote_settings.py never at once."""
    from cbor_decode import decode_message

    try:
        decoded = decode_message(kind, MESSAGES[kind]["config"][0], payload)
    except CborError as exc:
        decoded = exc
    finally:
        del decode_message  # a function keeps its module's code alive: this name would, until apply_config returns
        unload("cbor_decode")
    spec = __import__("apps.%s_settings" % kind, None, None, ("SETTINGS",)).SETTINGS
    from remote_settings import configure

    try:
        return configure(values, store, spec, decoded, fcnt)
    finally:
        unload("remote_settings")
        unload("apps.%s_settings" % kind)


def random_below(n):
    """A random integer in [0, n) (0 when n <= 0)."""
    return int.from_bytes(os.urandom(4), "big") % n if n > 0 else 0


def first_delay_ms(interval_s):
    """A random wait before the first reading: within half an interval, at most BOOT_SPREAD_MS."""
    return random_below(min(interval_s * 500, _BOOT_SPREAD_MS))


def guarded(step, failures):
    """Run step() (one reading); returns how many readings failed in a row. A sensor, radio or encoding failure is
    logged and must not end the loop; RESET_AFTER_FAILURES in a row reset the board."""
    try:
        step()
        return 0
    except Exception as exc:
        failures += 1
        print("reading failed (%d in a row): %s: %s" % (failures, type(exc).__name__, exc))
        if failures >= _RESET_AFTER_FAILURES:
            print("resetting after %d failed readings" % failures)
            machine.reset()
        return failures


def sleep_until(node, at_ms, between=None):
    """Sleep until at_ms; between(now_ms), if given, does the app's control work meanwhile and returns when it wants
    to run again (None: not before at_ms). A failing control step (a sensor off the bus) is tried again every
    CONTROL_RETRY_MS, logged once per sleep; the readings' own failures count towards a reset (guarded)."""
    logged = False
    while between is not None:
        now = node.now_ms()
        try:
            wake_ms = between(now) if now < at_ms else None
        except Exception as exc:
            if not logged:
                print("control failed: %s: %s; trying again every %d s" % (
                    type(exc).__name__, exc, _CONTROL_RETRY_MS // 1000))
                logged = True
            wake_ms = now + _CONTROL_RETRY_MS
        if wake_ms is None or wake_ms >= at_ms:
            break
        node.sleep_until(wake_ms)
    node.sleep_until(at_ms)


def run_slots(node, settings, step, between=None):
    """Forever: step() once per interval_s slot (settings["interval_s"], read anew each slot), at a random instant in
    the first half of the slot, so that nodes powered up together do not keep colliding on the air; between() does
    control work between readings (see sleep_until)."""
    failures = 0
    slot_ms = node.now_ms()
    offset_ms = first_delay_ms(settings["interval_s"])
    while True:
        sleep_until(node, slot_ms + offset_ms, between)
        failures = guarded(step, failures)
        interval_ms = int(settings["interval_s"] * 1000)
        spread_ms = interval_ms // 2
        offset_ms = random_below(spread_ms)
        slot_ms += interval_ms
        now = node.now_ms()
        while slot_ms + spread_ms <= now:  # the exchange outlasted whole slots (duty cycle): skip them
            slot_ms += interval_ms
