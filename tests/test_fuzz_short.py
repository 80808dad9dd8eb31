"""The fuzz campaign of bench/fuzz, short: a few thousand cases in all through the same targets (GWMP datagrams,
PHYPayloads with forgeries, CBOR payloads, downlink request JSON, ChirpStack uplink JSON, RAK3172 serial lines in the
real micropython). Any exception other than the typed errors, or an accepted forgery, fails the test; the outcome
counts show the cases reached past the first checks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench" / "fuzz"))
from fuzz_targets import ForgeryAccepted, PhyTarget, close_targets, run_target, targets  # noqa: E402

CASES = 500


@pytest.fixture(scope="module")
def fuzz_targets():
    chosen = {target.name: target for target in targets()}
    yield chosen
    close_targets(list(chosen.values()))


def test_gwmp_datagrams_fail_only_with_typed_errors(fuzz_targets) -> None:
    outcomes = run_target(fuzz_targets["gwmp_datagram"], CASES)
    assert sum(outcomes.values()) >= CASES
    assert any(o.startswith("push_data:") and "ok" in o for o in outcomes)  # whole PUSH_DATA got through
    assert any(not o.startswith(("ok", "push_data", "tx_ack")) for o in outcomes)  # and bad ones were refused


def test_phy_payloads_never_crash_and_no_forgery_is_accepted(fuzz_targets) -> None:
    outcomes = run_target(fuzz_targets["phy_payload"], CASES)
    assert outcomes["genuine:accepted"] > 0  # the oracle sees acceptance when it happens
    assert outcomes["forged:rejected"] > 0
    assert any(o.startswith("random:") for o in outcomes)


def test_the_forgery_oracle_can_fail() -> None:
    phy = PhyTarget()
    try:
        # a genuine frame (fresh FCnt) sent as "random bytes" is accepted: the oracle must call that a forgery
        with pytest.raises(ForgeryAccepted):
            phy.check(("random", phy.genuine_frame(b"\x01", 1, False)))
    finally:
        phy.close()


def test_cbor_payloads_fail_only_with_payload_errors(fuzz_targets) -> None:
    outcomes = run_target(fuzz_targets["cbor_payload"], CASES)
    assert outcomes["ok"] + outcomes["ok:warnings"] > 0
    assert outcomes["bad_cbor"] > 0


def test_downlink_requests_fail_only_with_request_errors(fuzz_targets) -> None:
    outcomes = run_target(fuzz_targets["downlink_json"], CASES)
    assert sum(outcomes.values()) >= CASES
    assert outcomes["ok"] > 0 and outcomes["bad_json"] > 0 and outcomes["bad_fport"] > 0


def test_chirpstack_uplinks_fail_only_with_input_errors(fuzz_targets) -> None:
    outcomes = run_target(fuzz_targets["chirpstack_json"], CASES)
    assert outcomes["ok"] + outcomes["ok:decode_error"] > 0  # whole messages got through to an event
    assert outcomes["bad_json"] > 0 and outcomes["bad_field"] > 0


def test_rak3172_serial_lines_fail_only_with_value_errors_in_micropython(fuzz_targets) -> None:
    outcomes = run_target(fuzz_targets["serial_lines"], CASES)
    assert outcomes["event:downlink"] > 0 and outcomes["ValueError"] > 0
    assert any(o.startswith("reply:") for o in outcomes)
