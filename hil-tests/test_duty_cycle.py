"""Over one virtual hour, a node asked to report every 10 s at SF12 keeps every sub-band within its EU868 duty cycle."""
import pytest

from dos_rig.airtime import time_on_air_us
from dos_rig.fleet import Fleet, make_node

pytestmark = pytest.mark.hil

HOUR_US = 3600 * 1_000_000
# EU868 sub-bands (MHz) and their duty cycle
SUB_BANDS = {(863.0, 865.0): 0.001, (865.0, 868.0): 0.01, (868.0, 868.6): 0.01, (868.7, 869.2): 0.001,
             (869.4, 869.65): 0.1}


def sub_band(freq_hz):
    mhz = freq_hz / 1e6
    return next(band for band in SUB_BANDS if band[0] <= mhz <= band[1])


def test_airtime_per_sub_band_stays_within_the_duty_cycle_over_an_hour(tmp_path):
    node = make_node(1, activation="abp", interval_s=10, data_rate=0, adr=False)
    with Fleet(tmp_path, [node]) as fleet:
        fleet.rig.run_until(lambda: fleet.rig.now_us() > HOUR_US + 60_000_000, timeout_s=300)
        transmissions = {}
        for entry in fleet.rig.air_log():
            if entry["sender"] == node.board_id:
                toa = time_on_air_us(len(bytes.fromhex(entry["phy"])), entry["sf"], entry["bw_khz"] * 1000)
                transmissions[(entry["t_us"], entry["phy"])] = (entry["t_us"] - toa, toa, entry["freq_hz"])
    assert all(sf == 12 for sf in {e["sf"] for e in fleet.rig.air_log() if e["sender"] == node.board_id})
    starts = sorted(transmissions.values())
    assert len(starts) >= 10, "the node hardly transmitted: the test would prove nothing"
    for band, duty in SUB_BANDS.items():
        in_band = [(start, toa) for start, toa, freq in starts if sub_band(freq) == band]
        for start, _toa in in_band:  # every window of one hour that begins with a transmission
            used = sum(toa for s, toa in in_band if start <= s < start + HOUR_US)
            assert used <= duty * HOUR_US, f"{band} MHz: {used / 1e6:.1f} s of airtime in an hour (limit {duty * 3600} s)"
    wanted = 3600 / 10  # what the node was asked for; the duty cycle allows far fewer at SF12
    assert len(starts) < wanted / 4
