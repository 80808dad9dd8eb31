"""Radio RX -> MQTT delivery latency through the real agent, measured in one run (never asserts; see bench/README.md).

A bench gateway sends one PUSH_DATA per frame at a steady rate (default 500 frames/s) to the agent process over
loopback UDP; `mosquitto_sub` (C, QoS 1) stamps each event on receipt (`%U`, the same wall clock). Latency = receipt
time - the forwarder's send time of that frame, matched by (DevEUI, FCnt). Measured twice in the same run:

- with `--dedup-ms 0` (one gateway, nothing to gather): the agent's own processing + MQTT, goal p99 <= 20 ms;
- with the default 200 ms dedup window, for comparison (a frame waits for copies from other gateways that long).

Baseline in the same run: the same paced stream of the same JSON published by a bare paho client straight to the
broker (the part of the latency that is MQTT's and the machine's, not the agent's).

Usage: python bench/latency.py [--rate N] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent_throughput import (
    BenchAgent,
    CSubscriber,
    bench_devices,
    build_frames,
    decode_only,
    devices_for,
    flag,
    settled_registry,
)
from dos_agent.mqtt_sink import DEFAULT_INFLIGHT
from dos_rig.broker import Mosquitto

P99_GOAL_MS = 20.0
WARMUP_FRAMES = 100  # left out of the figures: first connections, first schema loads


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def paced(count: int, rate: float, send) -> list[float]:
    """Call send(i) for i in range(count) at `rate` per second; returns each send's wall time."""
    sent = []
    start = time.perf_counter()
    wall0 = time.time() - start
    for i in range(count):
        due = start + i / rate
        while (lag := due - time.perf_counter()) > 0:
            time.sleep(min(lag, 0.002))
        send(i)
        sent.append(wall0 + time.perf_counter())
    return sent


def keys_of(events: list[tuple[float, str]]) -> dict[tuple[str, int], float]:
    """(dev_eui, fcnt) -> receipt time of each uplink event."""
    received = {}
    for stamp, payload in events:
        document = json.loads(payload)
        received[(document["dev_eui"], document["fcnt"])] = stamp
    return received


def udp_receive_buffer_errors() -> int | None:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (Linux), None elsewhere."""
    try:
        header, values = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
                          if line.startswith("Udp:")][:2]
    except (OSError, ValueError):
        return None
    return int(values[header.index("RcvbufErrors")])


@dataclass
class AgentLatency:
    latencies_ms: list[float]
    lost: list[int]  # indexes of frames whose event never came
    udp_drops: int | None  # datagrams the kernel dropped meanwhile (any socket on the machine)


def agent_latency(broker: Mosquitto, workdir: Path, devices, frames: list[bytes], documents: list[bytes],
                  rate: float, dedup_ms: int) -> AgentLatency:
    """Latencies (ms) of the frames after the warm-up through the agent with the given dedup window, and the frames
    lost on the way."""
    bench = BenchAgent(broker, workdir, devices, f"latency{dedup_ms}", dedup_ms)
    try:
        gateway = bench.gateway
        datagrams = [gateway.push_datagram(phy, 1_000_000 + i * 1000) for i, phy in enumerate(frames)]

        def send(i: int) -> None:
            gateway.send(*datagrams[i])
            gateway.poll(0)

        drops_before = udp_receive_buffer_errors()
        sent = paced(len(frames), rate, send)
        waiter_result: list = []
        waiter = threading.Thread(target=lambda: waiter_result.append(bench.subscriber.wait_events(len(frames), 5)))
        waiter.start()
        while waiter.is_alive():
            gateway.poll(0.05)
        drops_after = udp_receive_buffer_errors()
        received = keys_of(waiter_result[0])
    finally:
        bench.stop()
    keys = frame_keys(documents)
    lost = [i for i, key in enumerate(keys) if key not in received]
    latencies = [(received[key] - at) * 1000 for key, at in zip(keys[WARMUP_FRAMES:], sent[WARMUP_FRAMES:])
                 if key in received]
    drops = None if drops_before is None else drops_after - drops_before
    return AgentLatency(latencies, lost, drops)


def frame_keys(documents: list[bytes]) -> list[tuple[str, int]]:
    """(dev_eui, fcnt) of each frame, in sending order, from its event document."""
    return [(d["dev_eui"], d["fcnt"]) for d in map(json.loads, documents)]


def paho_latency(broker: Mosquitto, documents: list[bytes], rate: float) -> list[float]:
    """Latencies (ms) of the same documents published by a bare paho client at the same rate."""
    topic = "bench/latency-bare/up"
    subscriber = CSubscriber(broker, topic)
    try:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-latency-bare")
        client.max_inflight_messages_set(DEFAULT_INFLIGHT)
        client.connect(broker.host, broker.port)
        client.loop_start()
        while not client.is_connected():
            time.sleep(0.01)
        sent = paced(len(documents), rate, lambda i: client.publish(topic, documents[i], qos=1))
        events = subscriber.wait_events(len(documents), 5)
        client.loop_stop()
        client.disconnect()
    finally:
        subscriber.stop()
    received = keys_of(events)
    keys = frame_keys(documents)
    pairs = zip(keys[WARMUP_FRAMES:], sent[WARMUP_FRAMES:])
    return [(received[key] - at) * 1000 for key, at in pairs if key in received]


def summary(name: str, latencies: list[float]) -> str:
    return (f"{name:<34} p50 {percentile(latencies, 0.50):6.2f} ms  p99 {percentile(latencies, 0.99):6.2f} ms  "
            f"max {max(latencies):7.2f} ms  ({len(latencies)} frames)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="frames per second (default 500)")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each measurement (default 6)")
    args = parser.parse_args()
    count = int(args.rate * args.seconds) + WARMUP_FRAMES
    devices = bench_devices(devices_for(count))
    frames = build_frames(devices, count)
    with tempfile.TemporaryDirectory(prefix="dos-bench-") as tmp:
        workdir = Path(tmp)
        documents = decode_only(frames, settled_registry(workdir / "documents.sqlite", devices)).documents
        with Mosquitto(workdir / "mosquitto") as broker:
            bare = paho_latency(broker, documents, args.rate)
            agent0 = agent_latency(broker, workdir, devices, frames, documents, args.rate, 0)
            agent200 = agent_latency(broker, workdir, devices, frames, documents, args.rate, 200)
    print()
    print(f"latency at {args.rate:.0f} frames/s on loopback, {len(devices)} settled devices:")
    print(summary("bare paho publish -> mosquitto_sub", bare))
    for name, run in (("agent, dedup 0 ms", agent0), ("agent, dedup 200 ms (default)", agent200)):
        print(summary(name, run.latencies_ms))
        if run.lost:
            print(f"  LOST {len(run.lost)} of {count} frames (first {run.lost[0]}, last {run.lost[-1]}); UDP datagrams "
                  f"dropped for a full receive buffer meanwhile: {run.udp_drops}")
    p99 = percentile(agent0.latencies_ms, 0.99)
    print(f"agent p99 (dedup 0) / bare paho p99: {p99 / percentile(bare, 0.99):.2f}")
    print(f"goal agent p99 <= {P99_GOAL_MS:.0f} ms (dedup 0): {flag(p99 <= P99_GOAL_MS and not agent0.lost)}")


if __name__ == "__main__":
    main()
