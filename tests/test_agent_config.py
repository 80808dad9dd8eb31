"""The agent's TOML config file: the example in docs/ loads and sets every AgentConfig option, bad files fail naming the
file and the key, command-line options given override the file (and only those), and the agent process runs from a
file and logs JSON lines."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dos_agent.app import AgentConfig
from dos_agent.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main
from dos_agent.config import ConfigError, JsonLineFormatter, file_key, load_config, parse_config
from dos_rig.broker import stop_process

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "agent.example.toml"


def test_example_file_loads_and_shows_every_agent_option() -> None:
    values, logging_options = load_config(EXAMPLE)
    assert logging_options == {"log_level": "info", "log_format": "text"}
    config = AgentConfig(**values)
    assert config.registry == Path("/var/lib/dos-edge/registry.sqlite")
    assert (config.udp_host, config.udp_port, config.http_port) == ("0.0.0.0", 1700, 9108)
    assert config.mqtt_password is None and config.chirpstack_host is None  # optional features stay off
    # every option is in the example, set or as a `#key = value` line that is valid once uncommented
    uncommented = re.sub(r"(?m)^#(?=[a-z_]+ = )", "", EXAMPLE.read_text())
    all_values, _ = parse_config(uncommented, "uncommented example")
    assert set(all_values) == {f.name for f in dataclasses.fields(AgentConfig)}
    assert set(all_values) - set(values) == {"mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file", "mqtt_username",
                                             "mqtt_password", "outbox_path", "outputs_chirpstack_application",
                                             "homeassistant_discovery_prefix", "chirpstack_host", "chirpstack_ca_file",
                                             "chirpstack_cert_file", "chirpstack_key_file", "chirpstack_username",
                                             "chirpstack_password", "rak3172_port", "rak3172_gateway_id"}


def test_a_file_holding_a_password_must_be_private(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("registry = 'r.sqlite'\n[mqtt]\nusername = 'edge'\npassword = 's3cret-pw'\n")
    config.chmod(0o644)
    with pytest.raises(ConfigError, match=r"holds mqtt.password but is readable by others \(mode 644\)"):
        load_config(config)
    config.chmod(0o600)
    values, _ = load_config(config)
    assert values["mqtt_password"] == "s3cret-pw"


def test_check_config_never_prints_a_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("registry = 'r.sqlite'\n[chirpstack]\nhost = 'cs'\npassword = 's3cret-pw'\n")
    config.chmod(0o600)
    view = _check_config(["--config", str(config)], capsys)
    assert view["chirpstack.password"] == "<set>" and view["chirpstack.host"] == "cs"
    assert "s3cret-pw" not in json.dumps(view)


def test_field_names_map_to_tables() -> None:
    assert file_key("mqtt_host") == ("mqtt", "host")
    assert file_key("prefix") == ("mqtt", "prefix")
    assert file_key("dedup_ms") == ("session", "dedup_ms")
    assert file_key("registry") == (None, "registry")
    assert file_key("outbox_max_rows") == ("outbox", "max_rows")
    assert file_key("homeassistant_discovery_prefix") == ("outputs", "homeassistant_discovery_prefix")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("registry = 'r.sqlite'\n[mqtt]\nhots = 'x'\n",
         "agent.toml: mqtt.hots: unknown key (known here: mqtt.ca_file, mqtt.cert_file, mqtt.host, "),
        ("[udp]\nport = 'many'\n", "agent.toml: udp.port: expected an integer, got 'many'"),
        ("[udp]\nport = 70000\n", "agent.toml: udp.port: 70000 is outside 0..65535"),
        ("[session]\nadr_margin_db = true\n", "agent.toml: session.adr_margin_db: expected a number, got True"),
        ("[session]\nnet_id = 0x1000000\n", "agent.toml: session.net_id: 16777216 is outside 0..16777215"),
        ("registry = ''\n", "agent.toml: registry: expected a path"),
        ("registry = 'r.sqlite'\nbogus = 1\n", "agent.toml: bogus: unknown key"),
        ("[log]\nlevel = 'loud'\n", "agent.toml: log.level: expected one of debug, info, warning, error, got 'loud'"),
        ("[log]\ncolour = 'red'\n", "agent.toml: log.colour: unknown key"),
        ("registry = \n", "agent.toml: not valid TOML"),
    ],
)
def test_bad_files_name_the_file_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "agent.toml")
    assert str(caught.value).startswith(message)


def test_relative_paths_are_taken_from_the_files_folder(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "agent.toml"
    config.parent.mkdir()
    config.write_text("registry = 'state/registry.sqlite'\n")
    values, _ = load_config(config)
    assert values["registry"] == tmp_path / "etc" / "state" / "registry.sqlite"


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.toml: cannot read the config file: No such file"):
        load_config(tmp_path / "nope.toml")


def _check_config(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["agent", "run", *argv, "--check-config"]) == EXIT_OK
    return json.loads(capsys.readouterr().out)


def test_options_given_override_the_file_and_only_those(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("registry = 'reg.sqlite'\n[mqtt]\nport = 1884\nprefix = 'city'\n[udp]\nport = 1701\n"
                      "[log]\nformat = 'json'\n")
    from_file = _check_config(["--config", str(config)], capsys)
    assert (from_file["mqtt.port"], from_file["mqtt.prefix"], from_file["udp.port"]) == (1884, "city", 1701)
    assert from_file["registry"] == str(tmp_path / "reg.sqlite")
    assert from_file["log.format"] == "json"
    assert from_file["session.dedup_ms"] == 200  # AgentConfig's default: neither file nor flag
    # a flag equal to the built-in default still overrides the file
    overridden = _check_config(["--config", str(config), "--mqtt-port", "1883", "--udp", "127.0.0.1:1800",
                                "--http", "127.0.0.1:9200", "--log-format", "text"], capsys)
    assert (overridden["mqtt.port"], overridden["udp.host"], overridden["udp.port"]) == (1883, "127.0.0.1", 1800)
    assert (overridden["http.host"], overridden["http.port"]) == ("127.0.0.1", 9200)
    assert overridden["mqtt.prefix"] == "city"
    assert overridden["log.format"] == "text"


def test_flags_alone_still_work(capsys: pytest.CaptureFixture[str]) -> None:
    view = _check_config(["--registry", "r.sqlite", "--prefix", "x"], capsys)
    assert (view["registry"], view["mqtt.prefix"], view["http.port"]) == ("r.sqlite", "x", None)


def test_cli_reports_a_bad_file_and_a_missing_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt]\nport = 0\n")
    assert main(["agent", "run", "--config", str(bad)]) == EXIT_FAILURE
    assert f"{bad}: mqtt.port: 0 is outside 1..65535" in capsys.readouterr().err
    no_registry = tmp_path / "empty.toml"
    no_registry.write_text("[mqtt]\nport = 1884\n")
    assert main(["agent", "run", "--config", str(no_registry)]) == EXIT_FAILURE
    assert "no registry" in capsys.readouterr().err
    assert main(["agent", "run"]) == EXIT_USAGE


def test_json_log_lines_parse() -> None:
    record = logging.LogRecord("dos_agent", logging.INFO, __file__, 1, "frame=accepted asset=%s", ("SL-1",), None)
    entry = json.loads(JsonLineFormatter().format(record))
    assert (entry["level"], entry["logger"], entry["message"]) == ("INFO", "dos_agent", "frame=accepted asset=SL-1")


def test_the_agent_process_runs_from_a_config_file_and_logs_json_lines(tmp_path: Path, mosquitto) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f"registry = 'registry.sqlite'\n[udp]\nhost = '127.0.0.1'\nport = 0\n"
                      f"[mqtt]\nhost = '{mosquitto.host}'\nport = {mosquitto.port}\nprefix = 'cfg-json'\n"
                      "[log]\nformat = 'json'\n")
    dos_edge = Path(sys.executable).parent / "dos-edge"
    proc = subprocess.Popen([str(dos_edge), "agent", "run", "--config", str(config)], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        entries = []
        while not any(e["message"].startswith("agent: listening on udp") for e in entries):
            line = proc.stderr.readline()
            assert line, f"the agent ended before listening: {entries}"
            entries.append(json.loads(line))  # every line is one JSON object
        (listening,) = [e for e in entries if e["message"].startswith("agent: listening on udp 127.0.0.1:")]
        assert listening["level"] == "INFO" and listening["logger"] == "dos_agent"
        assert "under cfg-json/" in listening["message"]
        assert str(tmp_path / "registry.sqlite") in listening["message"]
    finally:
        stop_process(proc)
    rest = proc.stderr.read().splitlines()
    proc.stderr.close()
    assert proc.returncode == 0
    assert [json.loads(line)["message"] for line in rest][-1] == "agent: stopped"
    assert (tmp_path / "registry.sqlite").exists()
