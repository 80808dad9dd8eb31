"""`dos-edge`: the command line of DOS Edge (agent, device registry, schema tools, LoRaWAN frame tools, and the rig's
demo and tools).

Exit codes: 0 ok, 1 failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

#: Subcommands handed whole to another package's `main(argv)`, imported only when used.
_PASS_THROUGH = {
    "demo": ("dos_rig.demo", "run the demo: agent, private Mosquitto, emulated nodes"),
    "rig": ("dos_rig.cli", "the hardware-in-the-loop rig's tools"),
    "flash": ("dos_agent.flash", "flash, configure, self-test, register and label a node (what flash.sh runs)"),
}


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _in_range(field: str, parse: type = int) -> Callable[[str], int | float]:
    """An argparse type for the AgentConfig field `field`, checked against its range in the config file's table."""
    from dos_agent.config import OPTION_RANGES

    low, high = OPTION_RANGES[field]

    def check(text: str) -> int | float:
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {field} in {low:g}..{high:g}, got {text!r}")
        return value

    return check


def _net_id(text: str) -> int:
    digits = text.removeprefix("0x")
    if not 1 <= len(digits) <= 6 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise argparse.ArgumentTypeError(f"expected a NetID of up to 6 hex digits, got {text!r}")
    return int(digits, 16)


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
    run.add_argument("--mqtt-port", type=_in_range("mqtt_port"), default=1883, help="MQTT broker port (default 1883)")
    run.add_argument("--prefix", default="dos", help="MQTT topic prefix (default dos)")
    run.add_argument("--dedup-ms", type=_in_range("dedup_ms"), default=200, metavar="MS",
                     help="window gathering copies of one frame from several gateways (default 200)")
    run.add_argument("--net-id", type=_net_id, default=0, metavar="HEX",
                     help="NetID of this network, the DevAddr block OTAA joins get (default 000000)")
    run.add_argument("--adr-margin-db", type=_in_range("adr_margin_db", float), default=10.0, metavar="DB",
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
    show = devices.add_parser("show", help="one device (keys are never shown) and its bindings")
    show.add_argument("dev_eui")
    show.add_argument("--registry", required=True, type=Path)
    retire = devices.add_parser("retire", help="retire a device for good: its later frames are rejected")
    retire.add_argument("dev_eui")
    retire.add_argument("--registry", required=True, type=Path)

    assets = commands.add_parser("assets", help="assets: what the devices measure").add_subparsers(
        dest="action", required=True)
    assets.add_parser("list", help="list assets with their current device").add_argument(
        "--registry", required=True, type=Path)
    for action, help_text in (("show", "one asset: place, calibration, settings, device"),
                              ("history", "every binding of an asset and its journal"),
                              ("retire", "retire an asset (and its device) for good")):
        one = assets.add_parser(action, help=help_text)
        one.add_argument("asset_id")
        one.add_argument("--registry", required=True, type=Path)
    for action, help_text in (("add", "add an asset"), ("set", "change an asset's place, calibration or settings")):
        add = assets.add_parser(action, help=help_text)
        add.add_argument("asset_id")
        if action == "add":
            add.add_argument("--kind", required=True, help="node kind: streetlight, waste, bridge, ...")
        add.add_argument("--lat", type=float, help="latitude, degrees (WGS84)")
        add.add_argument("--lon", type=float, help="longitude, degrees (WGS84)")
        add.add_argument("--address", help="street address")
        add.add_argument("--calibration", type=_name_value, action="append", default=[], metavar="NAME=VALUE",
                         help="calibration value written into each device's config (repeatable)")
        add.add_argument("--settings", type=_name_value, action="append", default=[], metavar="NAME=VALUE",
                         help="app setting written into each device's config (repeatable)")
        add.add_argument("--registry", required=True, type=Path)

    swap = commands.add_parser("swap", help="replace an asset's device (Gerätetausch), or undo the last swap")
    swap.add_argument("--asset", required=True, help="the asset whose device is replaced")
    what = swap.add_mutually_exclusive_group(required=True)
    what.add_argument("--new-device", metavar="DEVEUI", help="the registered device that takes over")
    what.add_argument("--undo", action="store_true", help="reverse the asset's last swap (made by mistake)")
    swap.add_argument("--move", action="store_true", help="take the new device from the asset it is bound to")
    swap.add_argument("--registry", required=True, type=Path)

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
        ("devices", "show"): _devices_show,
        ("devices", "retire"): _devices_retire,
        ("assets", "list"): _assets_list,
        ("assets", "show"): _assets_show,
        ("assets", "add"): _assets_add,
        ("assets", "set"): _assets_set,
        ("assets", "history"): _assets_history,
        ("assets", "retire"): _assets_retire,
        ("swap", None): _swap,
        ("schema", "firmware-table"): _firmware_table,
        ("codec", "export"): _codec_export,
    }[(args.command, getattr(args, "action", None))]
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


def _existing_registry(path: Path):  # noqa: ANN202
    """The registry at `path`, which must exist (reading or changing, never creating one by mistake)."""
    from dos_agent.registry import RegistryError

    if not path.exists():
        raise RegistryError(f"{path}: no such registry")
    return _open_registry(path)


def _print_table(columns: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    cells = [columns] + [tuple("-" if value is None else str(value) for value in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _registry_command(args: argparse.Namespace, action) -> int:  # noqa: ANN001
    """Run `action(registry)` on the existing registry; registry and asset errors become one line and exit 1."""
    from dos_agent.registry import AssetError, RegistryError

    try:
        with _existing_registry(args.registry) as registry:
            return action(registry)
    except (AssetError, RegistryError, OSError, sqlite3.Error) as exc:
        return _fail(str(exc))


def _devices_list(args: argparse.Namespace) -> int:
    columns = ("dev_eui", "asset_id", "kind", "activation", "dev_addr", "fcnt_up", "state")

    def listing(registry) -> int:  # noqa: ANN001
        views = [device.public_view() for device in registry.devices()]
        _print_table(columns, [tuple(view[c] for c in columns) for view in views])
        return EXIT_OK

    return _registry_command(args, listing)


def _iso(at: float | None) -> str | None:
    from dos_agent.events import iso_utc

    return None if at is None else iso_utc(at)


def _devices_show(args: argparse.Namespace) -> int:
    def show(registry) -> int:  # noqa: ANN001
        device = registry.get(args.dev_eui)
        if device is None:
            return _fail(f"unknown device {args.dev_eui.lower()}; see `dos-edge devices list`")
        for name, value in device.public_view().items():
            print(f"{name}: {'-' if value is None else value}")
        for binding in registry.bindings(dev_eui=device.dev_eui):
            print(f"binding: asset {binding.asset_id} from {_iso(binding.from_at)} to {_iso(binding.to_at) or 'now'}")
        return EXIT_OK

    return _registry_command(args, show)


def _devices_retire(args: argparse.Namespace) -> int:
    def retire(registry) -> int:  # noqa: ANN001
        entry = registry.retire_device(args.dev_eui, time.time())
        print(f"device {entry.old_dev_eui} retired (last on asset {entry.asset_id}); its frames are rejected now")
        return EXIT_OK

    return _registry_command(args, retire)


def _assets_list(args: argparse.Namespace) -> int:
    def listing(registry) -> int:  # noqa: ANN001
        rows = []
        for asset in registry.assets():
            device = registry.device_for_asset(asset.asset_id)
            rows.append((asset.asset_id, asset.kind, asset.state, device.dev_eui if device else None, asset.address))
        _print_table(("asset_id", "kind", "state", "device", "address"), rows)
        return EXIT_OK

    return _registry_command(args, listing)


def _assets_show(args: argparse.Namespace) -> int:
    def show(registry) -> int:  # noqa: ANN001
        asset = registry.asset(args.asset_id)
        if asset is None:
            return _fail(f"unknown asset {args.asset_id}; see `dos-edge assets list`")
        device = registry.device_for_asset(asset.asset_id)
        print(f"asset_id: {asset.asset_id}\nkind: {asset.kind}\nstate: {asset.state}")
        print(f"location: {asset.lat if asset.lat is not None else '-'}, {asset.lon if asset.lon is not None else '-'}"
              f" {asset.address or ''}".rstrip())
        print(f"calibration: {json.dumps(asset.calibration, sort_keys=True)}")
        print(f"settings: {json.dumps(asset.settings, sort_keys=True)}")
        print(f"device: {device.dev_eui if device else '-'}")
        print(f"created: {_iso(asset.created_at)}")
        if asset.retired_at is not None:
            print(f"retired: {_iso(asset.retired_at)}")
        return EXIT_OK

    return _registry_command(args, show)


def _assets_add(args: argparse.Namespace) -> int:
    from dos_agent.registry import Asset, AssetError, RegistryError

    asset = Asset(args.asset_id, args.kind, lat=args.lat, lon=args.lon, address=args.address,
                  calibration=dict(args.calibration), settings=dict(args.settings), created_at=time.time())
    try:
        with _open_registry(args.registry) as registry:
            registry.add_asset(asset)
    except (AssetError, RegistryError, OSError, sqlite3.Error) as exc:
        return _fail(str(exc))
    print(f"asset {asset.asset_id} ({asset.kind}) added")
    return EXIT_OK


def _assets_set(args: argparse.Namespace) -> int:
    def change(registry) -> int:  # noqa: ANN001
        asset = registry.update_asset(args.asset_id, lat=args.lat, lon=args.lon, address=args.address,
                                      calibration=dict(args.calibration), settings=dict(args.settings))
        print(f"asset {asset.asset_id} changed; nodes flashed for it from now on get its new values")
        return EXIT_OK

    return _registry_command(args, change)


def _assets_history(args: argparse.Namespace) -> int:
    def history(registry) -> int:  # noqa: ANN001
        if registry.asset(args.asset_id) is None:
            return _fail(f"unknown asset {args.asset_id}; see `dos-edge assets list`")
        bindings = registry.bindings(args.asset_id)
        _print_table(("dev_eui", "from", "to"), [(b.dev_eui, _iso(b.from_at), _iso(b.to_at) or "now")
                                                 for b in bindings])
        for entry in registry.journal(args.asset_id):
            print(f"{_iso(entry.at)} {entry.type}: old {entry.old_dev_eui or '-'} new {entry.new_dev_eui or '-'}"
                  f"{'' if entry.published else ' (not published yet)'}")
        return EXIT_OK

    return _registry_command(args, history)


def _assets_retire(args: argparse.Namespace) -> int:
    def retire(registry) -> int:  # noqa: ANN001
        entry = registry.retire_asset(args.asset_id, time.time())
        device = f" with device {entry.old_dev_eui}" if entry.old_dev_eui else ""
        print(f"asset {entry.asset_id} retired{device}")
        return EXIT_OK

    return _registry_command(args, retire)


def _swap(args: argparse.Namespace) -> int:
    def swap(registry) -> int:  # noqa: ANN001
        if args.undo:
            entry = registry.undo_swap(args.asset, time.time())
            print(f"asset {entry.asset_id}: swap undone, device {entry.new_dev_eui} is back, {entry.old_dev_eui} is "
                  "unbound (provisioned)")
        else:
            entry = registry.swap(args.asset, args.new_device, time.time(), move=args.move)
            print(f"asset {entry.asset_id}: device {entry.old_dev_eui or '-'} -> {entry.new_dev_eui}"
                  + (f" ({entry.old_dev_eui} retired)" if entry.old_dev_eui else ""))
        return EXIT_OK

    return _registry_command(args, swap)


def _name_value(text: str) -> tuple[str, object]:
    """NAME=VALUE with VALUE a JSON number, true/false, or else text."""
    name, sep, raw = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if not isinstance(value, (int, float, bool, str)):
        value = raw
    return name, value


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
