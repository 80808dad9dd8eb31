"""Bridge condition-monitoring node: strain on up to 3 channels (HX711 bank, per-asset zero offsets), a vibration window
of the ADXL345's vertical axis computed on the node (RMS, peak, dominant frequency), tilt along the span (from the same
window), crack width (potentiometric gauge on an ADC), temperature (TMP102) and battery; one reading over LoRaWAN every
`interval_s`. A reading carries strain and vibration every time and as many of the slowly changing fields (tilt, crack
width, temperature, battery) as fit in PAYLOAD_BUDGET bytes, taking turns, so that a routine payload stays <= 24 bytes
(all ten fields take about 30); only strains and vibration all at extreme values (25 bytes) exceed it.

Settings (config "settings", interval_s at the top level; both also by the FPort 3 "config" downlink): interval_s (600),
confirmed (false). Calibration (config "calibration"): strain_channels (3), strain_counts_per_ue (1073.74: quarter
bridge, gauge factor 2, HX711 gain 128), strain_zero_ue ([0, 0, 0]: each channel's strain at installation, subtracted),
crack_mm_per_v (10.0), battery_divider (the board's), battery_empty_v (3.3), battery_full_v (4.2).
"""
from apps.runtime import apply_config, config_fport, handle, print_settings, radio_summary, run_slots
from cbor import encode_reading
from config import ConfigError, number, section
from drivers.adxl345 import ADXL345, COUNTS_PER_G, along_x_tilt
from drivers.tmp102 import TMP102
from drivers.vibration import vibration
from lorawan.commands import battery_level
from schema_v1 import MESSAGES
from settings import Settings

KIND = "bridge"
CONFIG_FPORT = config_fport(KIND)
SETTINGS = (("interval_s", 600, 10, 86400), ("confirmed", False, None, None))
PAYLOAD_BUDGET = 24  # bytes of CBOR for a routine reading
SLOW_FIELDS = ("tilt", "crack_width", "temperature", "battery")
WINDOW_SAMPLES = 64
SAMPLE_RATE_HZ = 50


def strains(counts, counts_per_ue, zero_ue):
    """Strain in µε per channel: counts scaled, minus the channel's zero offset."""
    return [round(c / counts_per_ue - zero) for c, zero in zip(counts, zero_ue)]


def _cbor_field_bytes(raw):
    """Bytes of one small-key map entry whose value is the CBOR integer raw."""
    n = raw if raw >= 0 else -1 - raw
    return 2 if n < 24 else 3 if n < 0x100 else 4 if n < 0x10000 else 6


def fit_reading(values, first_slow):
    """(the values to send, the slow field to start with next time): every field but the slow ones, then slow fields
    from SLOW_FIELDS[first_slow] on, in turn, while the payload stays within PAYLOAD_BUDGET; the first one left out
    leads the next reading."""
    factors = {}
    for name, _key, factor, _code in MESSAGES[KIND]["reading"][1]:
        factors[name] = factor
    chosen, size = {}, 1  # the map head
    for name, value in values.items():
        if name not in SLOW_FIELDS:
            chosen[name] = value
            size += _cbor_field_bytes(round(value * factors[name]))
    left_out = None
    for i in range(len(SLOW_FIELDS)):
        index = (first_slow + i) % len(SLOW_FIELDS)
        name = SLOW_FIELDS[index]
        entry = _cbor_field_bytes(round(values[name] * factors[name]))
        if size + entry <= PAYLOAD_BUDGET:
            chosen[name] = values[name]
            size += entry
        elif left_out is None:
            left_out = index
    return chosen, first_slow if left_out is None else left_out


class Bridge:
    """The bridge's sensors; reading() returns the values to report."""

    def __init__(self, board, config, store):
        self.settings = Settings(config, store, SETTINGS)
        calibration = section(config, "calibration")
        self.channels = int(number(calibration, "strain_channels", 3, 0, 3, "calibration"))
        self.counts_per_ue = number(calibration, "strain_counts_per_ue", 1073.74, 0.001, 1e6, "calibration")
        zero = calibration.get("strain_zero_ue", [0] * self.channels)
        if type(zero) is not list or len(zero) != self.channels or any(type(z) not in (int, float) for z in zero):
            raise ConfigError("calibration.strain_zero_ue must be a list of %d numbers" % self.channels)
        self.zero_ue = zero
        self.crack_mm_per_v = number(calibration, "crack_mm_per_v", 10.0, 0.001, 1000, "calibration")
        self.battery_divider = number(calibration, "battery_divider", board.BATTERY_DIVIDER, 1, 100, "calibration")
        self.battery_empty_v = number(calibration, "battery_empty_v", 3.3, 0, 60, "calibration")
        self.battery_full_v = number(calibration, "battery_full_v", 4.2, self.battery_empty_v + 0.01, 60, "calibration")
        self.board = board
        self.strain_adcs = board.strain_adcs(self.channels) if self.channels else None
        self.thermometer = TMP102(board.i2c())
        self.accelerometer = ADXL345(board.i2c(), rate_hz=SAMPLE_RATE_HZ)

    def reading(self):
        values = {}
        if self.strain_adcs is not None:
            for i, ue in enumerate(strains(self.strain_adcs.read(), self.counts_per_ue, self.zero_ue)):
                values["strain_%d" % (i + 1)] = ue
        mean_x, zs = self.accelerometer.window(WINDOW_SAMPLES)
        rms, peak, freq = vibration(zs, SAMPLE_RATE_HZ, floor=1 / COUNTS_PER_G)
        values.update(vibration_rms=rms, vibration_peak=peak, vibration_freq=freq, tilt=along_x_tilt(mean_x),
                      crack_width=self.board.crack_gauge_volts() * self.crack_mm_per_v,
                      temperature=self.thermometer.celsius(), battery=self.board.battery_volts(self.battery_divider))
        return values

    def handle(self, events):
        """(lines about the join, lines about downlinks) for the events of one send(); config downlinks are applied."""
        return handle(events, CONFIG_FPORT, lambda payload, fcnt: apply_config(KIND, self.settings, payload, fcnt))


def run(board, config, node, store):
    """The app's loop, forever: one reading per interval_s slot (apps.runtime.run_slots); the slow fields take turns."""
    app = Bridge(board, config, store)
    settings = app.settings.values
    print_settings(app.settings, SETTINGS)
    first_slow = [0]

    def step():
        values = app.reading()
        node.mac.battery_level = battery_level(values["battery"], app.battery_empty_v, app.battery_full_v)
        sent, first_slow[0] = fit_reading(values, first_slow[0])
        fport, payload = encode_reading(KIND, "reading", sent)
        events = node.send(fport, payload, settings["confirmed"])
        joins, downlinks = app.handle(events)
        strain = " ".join("%s=%d" % (k, values[k]) for k in ("strain_1", "strain_2", "strain_3") if k in values)
        line = ("reading %s vibration rms=%.3fg peak=%.3fg freq=%.1fHz tilt=%.2fdeg crack=%.2fmm temperature=%.1fC "
                "battery=%.2fV -> %s") % (strain, values["vibration_rms"], values["vibration_peak"],
                                          values["vibration_freq"], values["tilt"], values["crack_width"],
                                          values["temperature"], values["battery"], radio_summary(events))
        for text in joins + [line] + downlinks:
            print(text)

    run_slots(node, settings, step)
