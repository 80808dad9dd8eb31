"""Fixtures shared by tests/ and hil-tests/: a real Mosquitto on a free loopback port, stopped by PID."""
import pytest

from dos_rig.broker import Mosquitto


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    """A private broker for the whole test session: `.host`, `.port`."""
    with Mosquitto(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker
