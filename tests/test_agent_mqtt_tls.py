"""MQTT security against a real Mosquitto started with a CA and server certificate generated in the test (python
`cryptography`), a password file and required client certificates: events arrive and downlink requests still arrive
after a broker restart; a wrong password, a missing client certificate and an unknown CA are refused without an
exception and without the password in any log line; settings that cannot work are refused up front; the Agent
connects with its TLS and login options and says `online`, then `offline` on a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from dos_agent.app import AgentConfig
from dos_agent.mqtt_sink import BrokerSettings, MqttSink, event_topic
from dos_rig.broker import BrokerPki, Mosquitto, make_test_pki
from test_agent_gwmp import AgentThread

WAIT_S = 15.0
USER, PASSWORD = "dos-agent", "Zq8-correct-horse-battery"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> BrokerPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory, pki: BrokerPki):
    """TLS with client certificates required, and a password file (anonymous access off)."""
    with Mosquitto(tmp_path_factory.mktemp("tls-broker"), tls=pki, require_client_cert=True,
                   passwords={USER: PASSWORD, "reader": "reader-pw"}) as broker:
        yield broker


def settings(broker: Mosquitto, pki: BrokerPki, **changes) -> BrokerSettings:
    values = dict(host="127.0.0.1", port=broker.port, ca_file=pki.ca_file, cert_file=pki.client_cert,
                  key_file=pki.client_key, username=USER, password=PASSWORD)
    values.update(changes)
    return BrokerSettings(**values)


class SecureClient:
    """A paho client on its own thread, over TLS with the client certificate, as `reader`."""

    def __init__(self, broker: Mosquitto, pki: BrokerPki, topic: str | None = None) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tls-{uuid.uuid4().hex[:8]}")
        self.client.tls_set(ca_certs=str(pki.ca_file), certfile=str(pki.client_cert), keyfile=str(pki.client_key))
        self.client.username_pw_set("reader", "reader-pw")
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1) if topic else ready.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert ready.wait(WAIT_S)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_events_and_downlinks_over_tls_with_client_certificate_and_password(secure_broker, pki) -> None:
    prefix = f"tls{uuid.uuid4().hex[:6]}"
    reader = SecureClient(secure_broker, pki, f"{prefix}/assets/+/up")

    async def scenario() -> None:
        requests: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        sink = MqttSink(settings(secure_broker, pki), prefix=prefix)
        sink.subscribe_downlinks(lambda asset, payload: requests.put_nowait((asset, payload)))
        await sink.start()
        assert await sink.wait_connected(WAIT_S)
        sink.publish_event("lamp-1", b'{"n":1}')
        assert await asyncio.to_thread(reader.messages.get, timeout=WAIT_S) == (event_topic(prefix, "lamp-1"),
                                                                                 b'{"n":1}')
        await asyncio.to_thread(secure_broker.restart)  # a fresh broker: no session, no subscription
        assert await sink.wait_connected(WAIT_S)
        writer = await asyncio.to_thread(SecureClient, secure_broker, pki)
        try:
            deadline = time.monotonic() + WAIT_S
            got = None
            while got is None and time.monotonic() < deadline:  # until the re-made subscription is in place
                await asyncio.to_thread(writer.publish, f"{prefix}/assets/lamp-9/down", b'{"fport":3}')
                with contextlib.suppress(TimeoutError):
                    got = await asyncio.wait_for(requests.get(), 0.3)
            assert got == ("lamp-9", b'{"fport":3}')
        finally:
            writer.close()
        await sink.stop()

    try:
        asyncio.run(scenario())
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        ({"password": "wrong-password"}, "refused"),
        ({"cert_file": None, "key_file": None}, "cannot reach|refused|disconnected"),
        ("other_ca", "certificate verify failed"),
    ],
    ids=["wrong-password", "no-client-certificate", "unknown-ca"],
)
def test_refused_connections_neither_raise_nor_log_the_password(secure_broker, pki, tmp_path, caplog,
                                                                changes, refusal) -> None:
    if changes == "other_ca":
        changes = {"ca_file": make_test_pki(tmp_path / "other").ca_file}
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        sink = MqttSink(settings(secure_broker, pki, **changes), prefix="refused", connect_timeout=1.0)
        await sink.start()
        assert not await sink.wait_connected(2.5)
        sink.publish_event("lamp-1", b"{}")  # kept in the outbox for later
        await asyncio.sleep(0)
        assert sink.pending == 1
        await sink.stop(drain_timeout=0.1)

    asyncio.run(scenario())
    text = caplog.text
    assert PASSWORD not in text and "wrong-password" not in text
    assert re.search(refusal, text), text


def test_plain_tcp_to_a_tls_listener_is_not_a_session(secure_broker) -> None:
    async def scenario() -> None:
        sink = MqttSink(BrokerSettings("127.0.0.1", secure_broker.port, username=USER, password=PASSWORD),
                        prefix="plain", connect_timeout=1.0)
        await sink.start()
        assert not await sink.wait_connected(2.0)
        await sink.stop(drain_timeout=0.1)

    asyncio.run(scenario())


def test_settings_that_cannot_work_are_refused(pki, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both cert_file and key_file"):
        BrokerSettings(ca_file=pki.ca_file, cert_file=pki.client_cert)
    with pytest.raises(ValueError, match="needs TLS"):
        BrokerSettings(cert_file=pki.client_cert, key_file=pki.client_key)
    with pytest.raises(ValueError, match="needs a username"):
        BrokerSettings(password="x")
    with pytest.raises(ValueError, match="not a readable file"):
        BrokerSettings(ca_file=tmp_path / "missing.crt")


def test_passwords_never_show_in_a_repr(tmp_path: Path) -> None:
    broker = BrokerSettings(username=USER, password=PASSWORD)
    config = AgentConfig(registry=tmp_path / "r.sqlite", mqtt_username=USER, mqtt_password=PASSWORD,
                         chirpstack_host="cs.example", chirpstack_username="cs", chirpstack_password=PASSWORD)
    for text in (repr(broker), broker.describe(), repr(config), repr(config.mqtt_broker()),
                 repr(config.chirpstack_broker())):
        assert PASSWORD not in text
    assert config.mqtt_broker().password == PASSWORD  # kept, only not shown


def test_the_agent_connects_with_its_tls_and_login_options(secure_broker, pki, tmp_path: Path) -> None:
    prefix = f"tlsagent{uuid.uuid4().hex[:6]}"
    reader = SecureClient(secure_broker, pki, f"{prefix}/agent/status")
    config = AgentConfig(registry=tmp_path / "registry.sqlite", udp_host="127.0.0.1", udp_port=0,
                         mqtt_host="127.0.0.1", mqtt_port=secure_broker.port, prefix=prefix,
                         mqtt_ca_file=pki.ca_file, mqtt_cert_file=pki.client_cert, mqtt_key_file=pki.client_key,
                         mqtt_username=USER, mqtt_password=PASSWORD)
    try:
        with AgentThread(config) as agent_thread:
            assert agent_thread.call(lambda: agent_thread.agent.sink.connected)
            assert reader.messages.get(timeout=WAIT_S) == (f"{prefix}/agent/status", b"online")
        assert reader.messages.get(timeout=WAIT_S) == (f"{prefix}/agent/status", b"offline")  # a clean stop
    finally:
        reader.close()
