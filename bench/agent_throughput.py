"""Agent throughput, measured in one run (never asserts; see bench/README.md).

1. decode-only: frames/s through the session layer (parse, FCnt, MIC, decrypt, counter store), schema decode and the
   event JSON, for a few ABP devices, without MQTT.
2. publish ratio: (agent decode + publish at QoS 1 to a private Mosquitto, until a subscriber has every event)
   / (bare paho publish of the same JSON documents at QoS 1, same max_inflight, same subscriber), in events/s.

Usage: python bench/agent_throughput.py [--frames N] [--events N] [--max-inflight N] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from dos_agent.app import Agent, AgentConfig
from dos_agent.events import SchemaBook, encode_event, uplink_event
from dos_agent.registry import Registry
from dos_agent.session import Reception, SessionLayer, UplinkAccepted
from dos_codecs.crypto import SessionKeys
from dos_codecs.lorawan import DataFrame, MType
from dos_codecs.schema import load_schema
from dos_rig.broker import Mosquitto

DECODE_GOAL_PER_S = 30_000  # the later goal for decode-only throughput
PUBLISH_RATIO_GOAL = 0.8  # provisional: the agent should keep most of what bare paho can push
RECEPTION = Reception(gateway_eui="aa555a0000000101", tmst=1, freq=868_100_000, sf=7, bw=125_000, rssi=-70, snr=8.5,
                      time="2026-11-22T08:30:00.000000Z")

# A few ABP devices, one reading each kind.
DEVICES = [
    ("streetlight", {"lamp_on": True, "dim_level": 70, "power": 35.5, "energy": 123456, "ambient_light": 12,
                     "battery": 3.61}),
    ("waste", {"fill_level": 64, "distance": 0.412, "temperature": 12.3, "tilt": 2, "battery": 3.55}),
    ("bridge", {"strain_1": -120, "strain_2": 35, "strain_3": 8, "vibration_rms": 0.012, "tilt": 0.25,
                "temperature": 9.5, "battery": 3.4}),
    ("streetlight", {"lamp_on": False, "dim_level": 0, "power": 0, "energy": 99, "battery": 3.7}),
]


def provisioning() -> list[dict]:
    return [
        {"dev_eui": f"70b3d57ed000{i:04x}", "asset_id": f"bench-{kind}-{i}", "kind": kind, "activation": "abp",
         "dev_addr": f"2601{i:04x}", "nwk_s_key": f"{i + 1:02x}" * 16, "app_s_key": f"{i + 0x81:02x}" * 16}
        for i, (kind, _values) in enumerate(DEVICES)
    ]


def build_frames(count: int) -> list[bytes]:
    """`count` sealed uplinks, round-robin over the devices, counters 1, 2, ... per device."""
    entries = provisioning()
    keys = [SessionKeys(bytes.fromhex(e["nwk_s_key"]), bytes.fromhex(e["app_s_key"])) for e in entries]
    payloads = [load_schema(kind).encode("reading", values) for kind, values in DEVICES]
    frames = []
    for n in range(count):
        i = n % len(entries)
        fcnt = n // len(entries) + 1
        frame = DataFrame(mtype=MType.UNCONFIRMED_UP, dev_addr=int(entries[i]["dev_addr"], 16), fcnt16=fcnt & 0xFFFF,
                          fport=1, frm_payload=payloads[i])
        frames.append(keys[i].seal(frame, fcnt))
    return frames


def fresh_registry(workdir: Path, name: str) -> Path:
    path = workdir / f"{name}.sqlite"
    with Registry(path) as registry:
        registry.import_devices(provisioning())
    return path


def decode_only(frames: list[bytes], registry_path: Path) -> tuple[float, list[bytes]]:
    """(frames/s, the event documents) for session layer + schema decode + event JSON."""
    with Registry(registry_path) as registry:
        session = SessionLayer(registry)
        schemas = SchemaBook()
        documents = []
        now = time.time()
        started = time.perf_counter()
        for phy in frames:
            for event in session.handle_uplink(phy, RECEPTION, now):
                if isinstance(event, UplinkAccepted):
                    documents.append(encode_event(uplink_event(event, schemas)))
        registry.flush()
        elapsed = time.perf_counter() - started
    if len(documents) != len(frames):
        raise RuntimeError(f"only {len(documents)} of {len(frames)} frames were accepted")
    return len(frames) / elapsed, documents


SUBSCRIBER = r"""
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, port, topic, expected = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
count = 0
last = 0.0
def on_message(client, userdata, message):
    global count, last
    count += 1
    if count == expected:
        last = time.time()
        client.disconnect()
def on_subscribe(client, userdata, mid, reason_codes, properties):
    print("ready", flush=True)
client = mqtt.Client(CallbackAPIVersion.VERSION2)
client.on_message = on_message
client.on_subscribe = on_subscribe
client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
client.connect(host, port)
client.loop_forever()
print(f"{count} {last!r}", flush=True)
"""


class Subscriber:
    """A subscriber in its own process (so it does not share the publisher's GIL): reports when the last event came."""

    def __init__(self, broker: Mosquitto, topic: str, expected: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, broker.host, str(broker.port), topic, str(expected)],
            stdout=subprocess.PIPE, text=True,
        )
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("subscriber did not start")

    def finished_at(self, timeout: float = 120.0) -> float:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("subscriber did not receive every event in time") from None
        count, last = out.split()
        return float(last)


def bare_paho(broker: Mosquitto, documents: list[bytes], max_inflight: int) -> float:
    """events/s: a bare paho client publishing the documents at QoS 1 with its no-thread loop."""
    topic = "bench/bare/up"
    subscriber = Subscriber(broker, topic, len(documents))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare")
    client.max_inflight_messages_set(max_inflight)
    client.connect(broker.host, broker.port)
    while not client.is_connected():
        client.loop(0.01)
    started = time.time()
    for i, document in enumerate(documents):
        client.publish(topic, document, qos=1)
        if i % 100 == 99:
            client.loop(0)
    while subscriber.proc.poll() is None:
        client.loop(0.001)
    finished = subscriber.finished_at()
    client.disconnect()
    return len(documents) / (finished - started)


def agent_publish(broker: Mosquitto, frames: list[bytes], registry_path: Path, max_inflight: int) -> float:
    """events/s: the real Agent (session layer, decode, event, MQTT sink on asyncio) from frames to a subscriber."""
    prefix = "bench/agent"
    subscriber = Subscriber(broker, f"{prefix}/assets/+/up", len(frames))

    async def run() -> float:
        config = AgentConfig(registry=registry_path, udp_host="127.0.0.1", udp_port=0, mqtt_host=broker.host,
                             mqtt_port=broker.port, prefix=prefix, max_inflight=max_inflight)
        agent = Agent(config)
        await agent.start()
        await agent.sink.wait_connected(10)
        started = time.time()
        now = started
        for i, phy in enumerate(frames):
            for event in agent.session.handle_uplink(phy, RECEPTION, now):
                agent.handle_event(event)
            if i % 100 == 99:
                await asyncio.sleep(0)
        while subscriber.proc.poll() is None:
            await asyncio.sleep(0.001)
        finished = subscriber.finished_at()
        await agent.stop()
        return len(frames) / (finished - started)

    return asyncio.run(run())


def profile_decode(frames: list[bytes], registry_path: Path) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    decode_only(frames, registry_path)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    return "cProfile of the decode-only path, top 15 by own time:\n" + out.getvalue().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000, help="frames for the decode-only measurement")
    parser.add_argument("--events", type=int, default=10_000, help="events for each publish measurement")
    parser.add_argument("--max-inflight", type=int, default=50, help="paho max_inflight for both (20..100)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each is kept")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the decode-only path")
    args = parser.parse_args()

    print(f"building {max(args.frames, args.events)} sealed uplinks for {len(DEVICES)} ABP devices ...", flush=True)
    frames = build_frames(max(args.frames, args.events))
    with tempfile.TemporaryDirectory(prefix="dos-bench-") as tmp:
        workdir = Path(tmp)
        decode_rates = []
        for r in range(args.rounds):
            rate, documents = decode_only(frames[: args.frames], fresh_registry(workdir, f"decode{r}"))
            decode_rates.append(rate)
        decode_rate = max(decode_rates)

        publish_frames = frames[: args.events]
        documents = documents[: args.events]
        bare_rates, agent_rates = [], []
        with Mosquitto(workdir / "mosquitto") as broker:
            for r in range(args.rounds):
                bare_rates.append(bare_paho(broker, documents, args.max_inflight))
                agent_rates.append(agent_publish(broker, publish_frames, fresh_registry(workdir, f"pub{r}"),
                                                 args.max_inflight))
        if args.profile:
            print(profile_decode(frames[: args.frames], fresh_registry(workdir, "profile")))

    bare_rate, agent_rate = max(bare_rates), max(agent_rates)
    ratio = agent_rate / bare_rate
    print()
    print(f"decode-only (session + schema decode + event JSON): {decode_rate:,.0f} frames/s "
          f"({1e6 / decode_rate:.1f} µs/frame; rounds {', '.join(f'{x:,.0f}' for x in decode_rates)})")
    print(f"  goal (later): >= {DECODE_GOAL_PER_S:,} frames/s -> "
          + ("met" if decode_rate >= DECODE_GOAL_PER_S else f"at {decode_rate / DECODE_GOAL_PER_S:.0%} of it"))
    print(f"bare paho QoS 1 publish:             {bare_rate:,.0f} events/s (max_inflight {args.max_inflight})")
    print(f"agent decode + QoS 1 publish:        {agent_rate:,.0f} events/s")
    print(f"ratio agent / bare paho:             {ratio:.2f}  (provisional goal >= {PUBLISH_RATIO_GOAL:.2f}: "
          + ("met" if ratio >= PUBLISH_RATIO_GOAL else "not met") + ")")


if __name__ == "__main__":
    main()
