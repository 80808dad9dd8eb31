"""`dos-edge`: the command line of DOS Edge (agent, device registry, schema tools, LoRaWAN frame tools, and the rig's
demo and tools).

Exit codes: 0 ok, 1 failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

#: Subcommands handed whole to another package's `main(argv)`, imported only when used.
_PASS_THROUGH = {
    "demo": ("dos_rig.demo", "run the demo: agent, private Mosquitto, emulated nodes"),
    "rig": ("dos_rig.cli", "the hardware-in-the-loop rig's tools"),
}


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 1..65535, got {text!r}")
    return int(text)


def _dedup_ms(text: str) -> int:
    if not text.isdigit() or int(text) > 10_000:
        raise argparse.ArgumentTypeError(f"expected milliseconds 0..10000, got {text!r}")
    return int(text)


def _net_id(text: str) -> int:
    digits = text.removeprefix("0x")
    if not 1 <= len(digits) <= 6 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise argparse.ArgumentTypeError(f"expected a NetID of up to 6 hex digits, got {text!r}")
    return int(digits, 16)


def _margin_db(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 30:
        raise argparse.ArgumentTypeError(f"expected a margin of 0..30 dB, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `dos-edge`."""
    parser = argparse.ArgumentParser(prog="dos-edge", description="DOS Edge: LoRaWAN edge agent and tools")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    agent = commands.add_parser("agent", help="the gateway agent").add_subparsers(dest="action", required=True)
    run = agent.add_parser("run", help="run the agent until SIGINT/SIGTERM")
    from dos_agent.config import use_given_tracking

    use_given_tracking(run)  # options given here override the config file
    run.add_argument("--config", type=Path, metavar="FILE", help="TOML config file (docs/agent.example.toml)")
    run.add_argument("--check-config", action="store_true",
                     help="print the resolved configuration (no secrets) and exit 0, or 1 naming what is wrong")
    run.add_argument("--registry", type=Path, help="registry file (SQLite); required here or in the config file")
    run.add_argument("--udp", type=_host_port, default=("0.0.0.0", 1700), metavar="HOST:PORT",
                     help="Semtech UDP listen address (default 0.0.0.0:1700)")
    run.add_argument("--mqtt-host", default="127.0.0.1", help="MQTT broker host (default 127.0.0.1)")
    run.add_argument("--mqtt-port", type=_port, default=1883, help="MQTT broker port (default 1883)")
    run.add_argument("--prefix", default="dos", help="MQTT topic prefix (default dos)")
    run.add_argument("--dedup-ms", type=_dedup_ms, default=200, metavar="MS",
                     help="window gathering copies of one frame from several gateways (default 200)")
    run.add_argument("--net-id", type=_net_id, default=0, metavar="HEX",
                     help="NetID of this network, the DevAddr block OTAA joins get (default 000000)")
    run.add_argument("--adr-margin-db", type=_margin_db, default=10.0, metavar="DB",
                     help="SNR margin ADR keeps above the demodulation floor (default 10)")
    run.add_argument("--http", type=_host_port, metavar="HOST:PORT",
                     help="serve the status page and Prometheus /metrics here (default: off; 127.0.0.1:9108 is usual)")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-format", default="text", choices=["text", "json"],
                     help="text: key=value lines (default); json: one JSON object per line")

    devices = commands.add_parser("devices", help="the device registry").add_subparsers(dest="action", required=True)
    imp = devices.add_parser("import", help="import a provisioning file ([[device]] list, TOML or JSON)")
    imp.add_argument("file", type=Path)
    imp.add_argument("--registry", required=True, type=Path)
    listing = devices.add_parser("list", help="list devices (keys are never shown)")
    listing.add_argument("--registry", required=True, type=Path)

    schema = commands.add_parser("schema", help="payload schema tools").add_subparsers(dest="action", required=True)
    table = schema.add_parser("firmware-table", help="generate the firmware's schema table (firmware/schema_v1.py)")
    table.add_argument("--check", action="store_true", help="exit 1 if the file differs from the schema")
    table.add_argument("--out", type=Path, help="output file (default: the repo's firmware/schema_v1.py)")

    codec = commands.add_parser("codec", help="payload codecs for other network servers").add_subparsers(
        dest="action", required=True)
    codec_export = codec.add_parser("export", help="write JavaScript codecs (and TTS examples) from the schema")
    codec_export.add_argument("--format", required=True, choices=["ttn", "chirpstack"])
    codec_export.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")

    from dos_agent import lorawan_tool

    lorawan_tool.register(commands)

    for name, (_module, help_text) in _PASS_THROUGH.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `dos-edge` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _PASS_THROUGH:
        return _pass_through(argv[0], argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "agent" and args.action == "run" and args.registry is None and args.config is None:
            parser.error("agent run: give --registry or --config")
    except SystemExit as exc:  # argparse: --help exits 0, usage errors 2
        return int(exc.code or 0)
    if args.command == "lorawan":
        from dos_agent import lorawan_tool

        return lorawan_tool.run(args)
    handler = {
        ("agent", "run"): _agent_run,
        ("devices", "import"): _devices_import,
        ("devices", "list"): _devices_list,
        ("schema", "firmware-table"): _firmware_table,
        ("codec", "export"): _codec_export,
    }[(args.command, args.action)]
    return handler(args)


def _fail(message: str) -> int:
    print(f"dos-edge: {message}", file=sys.stderr)
    return EXIT_FAILURE


def _pass_through(command: str, rest: list[str]) -> int:
    module_name = _PASS_THROUGH[command][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            return _fail(f"`{command}` needs {module_name}, which is not installed (install dos-edge with the rig extra)")
        raise
    result = module.main(rest)
    return int(result or 0)


def _agent_run(args: argparse.Namespace) -> int:
    import json

    from dos_agent.app import Agent
    from dos_agent.config import ConfigError, configure_logging, public_view, resolve
    from dos_agent.registry import RegistryError

    try:
        settings = resolve(args)
    except ConfigError as exc:
        return _fail(str(exc))
    if args.check_config:
        print(json.dumps(public_view(settings), indent=2))
        return EXIT_OK
    configure_logging(settings.log_level, settings.log_format)
    try:
        agent = Agent(settings.agent)
    except (RegistryError, OSError, ValueError) as exc:
        return _fail(f"cannot start the agent: {exc}")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await agent.run(stop)

    try:
        asyncio.run(run())
    except OSError as exc:  # the UDP port could not be bound
        return _fail(f"agent stopped: {exc}")
    return EXIT_OK


def _open_registry(path: Path):  # noqa: ANN202
    from dos_agent.registry import Registry

    return Registry(path)


def _devices_import(args: argparse.Namespace) -> int:
    from dos_agent.registry import ProvisioningError, RegistryError

    try:
        with _open_registry(args.registry) as registry:
            report = registry.import_file(args.file)
    except ProvisioningError as exc:
        print(f"dos-edge: {args.file}: nothing imported:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_FAILURE
    except (RegistryError, OSError) as exc:
        return _fail(str(exc))
    print(f"{len(report.added)} added, {len(report.updated)} updated, {len(report.unchanged)} unchanged")
    return EXIT_OK


def _devices_list(args: argparse.Namespace) -> int:
    from dos_agent.registry import RegistryError

    if not args.registry.exists():
        return _fail(f"{args.registry}: no such registry")
    try:
        with _open_registry(args.registry) as registry:
            devices = registry.devices()
    except (RegistryError, OSError) as exc:
        return _fail(str(exc))
    columns = ("dev_eui", "asset_id", "kind", "activation", "dev_addr", "fcnt_up", "state")
    views = [device.public_view() for device in devices]
    rows = [columns] + [tuple("-" if view[c] is None else str(view[c]) for c in columns) for view in views]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return EXIT_OK


def default_firmware_table_path() -> Path:
    """firmware/schema_v1.py of the repository that holds the dos_codecs package."""
    import dos_codecs

    return Path(dos_codecs.__file__).resolve().parent.parent / "firmware" / "schema_v1.py"


def _firmware_table(args: argparse.Namespace) -> int:
    from dos_codecs.errors import CodecError
    from dos_codecs.firmware_table import render_firmware_table

    try:
        text = render_firmware_table()
    except CodecError as exc:
        return _fail(f"cannot render the firmware table: {exc}")
    out = args.out or default_firmware_table_path()
    if args.check:
        try:
            current = out.read_text(encoding="utf-8")
        except OSError as exc:
            return _fail(f"{out}: {exc.strerror or exc}; run `dos-edge schema firmware-table` to create it")
        if current != text:
            return _fail(f"{out} differs from the payload schema; run `dos-edge schema firmware-table` to regenerate it")
        print(f"{out} matches the payload schema")
        return EXIT_OK
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        return _fail(f"{out}: {exc.strerror or exc}")
    print(f"wrote {out}")
    return EXIT_OK


def _codec_export(args: argparse.Namespace) -> int:
    from dos_codecs.errors import CodecError
    from dos_codecs.export import export_codecs

    try:
        written = export_codecs(args.format, args.out)
    except (CodecError, OSError) as exc:
        return _fail(f"cannot export the codecs: {exc}")
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK
