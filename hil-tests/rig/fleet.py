"""A whole emulated deployment in one object: private Mosquitto, the real agent process, the rig with a gateway and boards
running the real firmware (installed with mpremote, a few boards at a time), and an MQTT tap that collects what the
agent publishes. A node's config.json and provisioning record are dos_agent.provisioning's, as for a real device.

In the rig every gateway's copy of a frame reaches the agent at the same wall instant, so the fleet's agent runs with a
short dedup window (RIG_DEDUP_MS instead of the 200 ms real gateways need), which the gateways' answer grace knows.
The demo and the HIL tests both build on it, so the demo shows exactly what the tests check.
"""
from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt

from dos_rig.broker import Mosquitto, free_port, stop_process
from dos_agent.firmware_install import install_firmware
from dos_agent.provisioning import DeviceIdentity, device_config, registry_entry, write_record
from dos_agent.registry import Asset
from dos_rig.rig import DEFAULT_EPOCH, Rig
from dos_rig.scenarios import ScenarioError, load_scenario
from dos_rig.sensors import KITS

GATEWAY_EUI = "0016C001FF10A235"
#: The fleet agent's dedup window: the rig's gateways send their copies of a frame together.
RIG_DEDUP_MS = 20
#: Boards installed at once: an install (mpremote) mostly waits on round trips with its board, so more at once help
#: even on two cores (24 boards: 69 s two at a time, 38 s four, 21 s twelve).
PARALLEL_INSTALLS = 12


@dataclass
class Node:
    """One provisioned node: its identity, keys, configuration and the emulated board it runs on."""
    board_id: str
    kind: str
    asset_id: str
    dev_eui: str
    position: tuple[float, float]
    activation: str = "abp"
    dev_addr: str | None = None
    nwk_s_key: str | None = field(default=None, repr=False)
    app_s_key: str | None = field(default=None, repr=False)
    join_eui: str | None = None
    app_key: str | None = field(default=None, repr=False)
    interval_s: int = 60
    data_rate: int = 5
    adr: bool = True
    settings: dict = field(default_factory=dict)
    scenario: dict = field(default_factory=dict)
    board_file: str = "emu"  # firmware/boards/<board_file>.py: "emu" (SX1276) or "emu_rak3172" (RAK3172 on UART1)
    board: object = None

    def identity(self) -> DeviceIdentity:
        return DeviceIdentity(self.dev_eui, self.activation, join_eui=self.join_eui, app_key=self.app_key,
                              dev_addr=self.dev_addr, nwk_s_key=self.nwk_s_key, app_s_key=self.app_s_key)

    def asset(self) -> Asset:
        """The asset the node measures; its settings carry the node's interval, data rate and ADR."""
        settings = {**self.settings, "interval_s": self.interval_s, "data_rate": self.data_rate, "adr": self.adr}
        return Asset(self.asset_id, self.kind, settings=settings)

    def config(self) -> dict:
        """The board's config.json."""
        return device_config(self.board_file, self.asset(), self.identity())

    def provisioning(self) -> dict:
        """The registry entry `dos-edge devices import` reads."""
        return registry_entry(self.asset(), self.identity())


def node_scenario(kind: str, scenario: str | Path | dict | None) -> dict:
    """The board scenario of a node of `kind`: a scenario file's name or path (dos_rig.scenarios), a dict of scenario
    values or None; its sensor kit is the node kind's unless it names the same one."""
    values = load_scenario(scenario) if isinstance(scenario, (str, Path)) else dict(scenario or {})
    kit = values.setdefault("kit", kind if kind in KITS else "streetlight")
    if kind in KITS and kit != kind:
        raise ScenarioError(f"a {kind} node cannot run a scenario for the {kit} kit")
    return values


def make_node(index: int, kind: str = "streetlight", activation: str = "abp", prefix: str = "SL-DO",
              position: tuple[float, float] | None = None, scenario: str | Path | dict | None = None,
              board: str = "emu", **options) -> Node:
    """Node number `index` with fresh random keys, by default 200 m further along the street from the gateway per index;
    `scenario` as in node_scenario(); `board` is its board file (emu, or emu_rak3172: a RAK3172 modem on UART1)."""
    node = Node(board_id=f"node{index}", kind=kind, asset_id=f"{prefix}-{index:04d}", dev_eui=f"70B3D57ED00500{index:02X}",
                position=position or (200.0 * index, 50.0), activation=activation,
                scenario=node_scenario(kind, scenario), board_file=board, **options)
    if activation == "otaa":
        node.join_eui, node.app_key = "70B3D57ED0000000", secrets.token_hex(16)
    else:
        node.dev_addr, node.nwk_s_key, node.app_s_key = f"2601{index:04X}", secrets.token_hex(16), secrets.token_hex(16)
    return node


def make_nodes(count: int, kind: str = "streetlight", **options) -> list[Node]:
    """`count` nodes (see make_node), all with the same options."""
    return [make_node(i, kind, **options) for i in range(1, count + 1)]


def dos_edge(*args: str) -> list[str]:
    """Command line for the project's CLI with this interpreter (no reliance on PATH)."""
    return [sys.executable, "-c", "import sys; from dos_agent.cli import main; sys.exit(main())", *args]


class AgentProcess:
    """The real agent (`dos-edge agent run`) as a child process, stopped by PID."""

    def __init__(self, workdir: Path, registry: Path, udp_port: int, mqtt_port: int, prefix: str = "dos",
                 extra_args: tuple[str, ...] = ()):
        self.workdir, self.registry = workdir, registry
        self.udp_port, self.mqtt_port, self.prefix, self.extra_args = udp_port, mqtt_port, prefix, extra_args
        self.log_path = workdir / "agent.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "AgentProcess":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            dos_edge("agent", "run", "--registry", str(self.registry), "--udp", f"127.0.0.1:{self.udp_port}",
                     "--mqtt-host", "127.0.0.1", "--mqtt-port", str(self.mqtt_port), "--prefix", self.prefix,
                     *self.extra_args),
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_listening(self, timeout_s: float = 20.0) -> None:
        """Wait for the agent's 'listening' log line, so the gateways' first PULL_DATA is not lost."""
        deadline = time.monotonic() + timeout_s
        while "agent: listening on udp" not in self.log_text():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the agent exited with code {self.proc.returncode}:\n{self.log_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the agent did not start listening within {timeout_s} s:\n{self.log_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, grace_s=10)
        if getattr(self, "_log", None):
            self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class MqttTap:
    """Subscribes to topics on the broker and keeps every message (topic, decoded JSON) in arrival order."""

    def __init__(self, port: int, topics: list[str], host: str = "127.0.0.1"):
        self.messages: list[tuple[str, object]] = []
        self._new = threading.Condition()
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"tap-{secrets.token_hex(4)}")
        self.client.on_connect = lambda c, u, f, rc, p: [c.subscribe(t, qos=1) for t in topics]
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("MQTT tap could not subscribe")

    def _on_message(self, client, userdata, msg) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = msg.payload
        with self._new:
            self.messages.append((msg.topic, body))
            self._new.notify_all()

    def wait_for(self, predicate: Callable[[list], bool], timeout_s: float) -> bool:
        """Wait until predicate(messages) holds; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._new:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._new.wait(left)
            return True

    def on(self, topic_filter: Callable[[str], bool]) -> list:
        with self._new:
            return [body for topic, body in self.messages if topic_filter(topic)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Fleet:
    """Broker + agent + rig + provisioned boards, started and stopped together (every process by PID)."""

    def __init__(self, workdir: Path, nodes: list[Node], speed: float | None = None, prefix: str = "dos",
                 epoch: str = DEFAULT_EPOCH, gateways: tuple[tuple[str, tuple[float, float]], ...] = ((GATEWAY_EUI, (0.0, 0.0)),),
                 agent_args: tuple[str, ...] = (), log: Callable[[str], None] = lambda s: None,
                 scenarios_from_up: bool = False, dedup_ms: int = RIG_DEDUP_MS):
        """scenarios_from_up: hold every board's scenario at scenario time 0 while the fleet is installed (the clock
        runs meanwhile) and start them all together once it is up, at virtual second `scenario_origin_s`; else scenario
        time is the rig's. dedup_ms: the agent's dedup window (`--dedup-ms`; agent_args come after it)."""
        self.workdir, self.nodes, self.speed, self.prefix, self.log = Path(workdir), nodes, speed, prefix, log
        self.epoch, self.gateways, self.dedup_ms = epoch, gateways, dedup_ms
        self.agent_args = ("--dedup-ms", str(dedup_ms), *agent_args)
        self.scenarios_from_up = scenarios_from_up
        self.scenario_origin_s = 0.0
        self.broker: Mosquitto | None = None
        self.agent: AgentProcess | None = None
        self.rig: Rig | None = None
        self.tap: MqttTap | None = None

    def start(self) -> "Fleet":
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.broker = Mosquitto(self.workdir / "mosquitto").start()
        self.log(f"mosquitto listening on 127.0.0.1:{self.broker.port}")
        provisioning = self.workdir / "provisioning.json"
        registry = self.workdir / "registry.sqlite"
        registry.unlink(missing_ok=True)
        write_record(provisioning, [node.provisioning() for node in self.nodes])
        subprocess.run(dos_edge("devices", "import", str(provisioning), "--registry", str(registry)),
                       check=True, capture_output=True)
        self.tap = MqttTap(self.broker.port, [f"{self.prefix}/#"])
        udp_port = free_port(kind=2)  # SOCK_DGRAM
        self.agent = AgentProcess(self.workdir, registry, udp_port, self.broker.port, self.prefix, self.agent_args).start()
        self.agent.wait_listening()
        self.log(f"agent listening on udp 127.0.0.1:{udp_port} (log {self.agent.log_path})")
        self.rig = Rig(self.workdir / "rig", agent_addr=("127.0.0.1", udp_port), air_log=self.workdir / "air.jsonl",
                       speed=self.speed, epoch=self.epoch, agent_dedup_s=self.dedup_ms / 1000)
        self.rig.start()
        for eui, position in self.gateways:
            self.rig.add_gateway(eui, position)
        for node in self.nodes:
            node.board = self.rig.add_board(node.board_id, self.workdir / "boards" / node.board_id, node.position,
                                            scenario=node.scenario, rak3172=node.board_file == "emu_rak3172")
            if self.scenarios_from_up:
                self.rig.call(node.board.scenario.hold)
        with ThreadPoolExecutor(PARALLEL_INSTALLS, thread_name_prefix="fleet-install") as installers:
            # list(): wait for every install and raise the first failure
            list(installers.map(self._install, self.nodes))
        if self.scenarios_from_up:
            self.scenario_origin_s = self.rig.call(self._start_scenarios)
            self.log(f"scenarios started at virtual second {self.scenario_origin_s:.3f}")

    def _install(self, node: Node) -> None:
        install_firmware(str(node.board.link), node.board_file, node.kind, node.config(), log=self.log)
        self.log(f"{node.board_id}: {node.kind} {node.asset_id} DevEUI {node.dev_eui} installed and reset")

    def _start_scenarios(self) -> float:
        """(On the rig's loop) scenario time 0 of every board is now; returns now in virtual seconds."""
        origin_s = self.rig.now_us() / 1e6
        for node in self.nodes:
            node.board.scenario.set_origin(origin_s)
        return origin_s

    def uplinks(self, asset_id: str | None = None) -> list[dict]:
        """Uplink events seen on MQTT so far (for one asset, or all)."""
        return [b for b in self.tap.on(lambda t: t.endswith("/up")) if asset_id is None or b.get("asset_id") == asset_id]

    def events(self, asset_id: str, kind: str) -> list[dict]:
        """`<prefix>/assets/<asset_id>/event/<kind>` messages seen so far."""
        return self.tap.on(lambda t: t == f"{self.prefix}/assets/{asset_id}/event/{kind}")

    def downlink(self, asset_id: str, request: dict) -> None:
        """Ask the agent for a downlink, as a city platform would: publish on the asset's down topic."""
        self.tap.client.publish(f"{self.prefix}/assets/{asset_id}/down", json.dumps(request), qos=1).wait_for_publish(10)

    def node(self, asset_id: str) -> Node:
        return next(n for n in self.nodes if n.asset_id == asset_id)

    def stop(self) -> None:
        for part in (self.tap, self.rig, self.agent, self.broker):
            if part is not None:
                try:
                    (part.close if part is self.tap else part.stop)()
                except Exception as exc:  # keep stopping the rest
                    self.log(f"while stopping {type(part).__name__}: {exc}")

    def __enter__(self) -> "Fleet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
