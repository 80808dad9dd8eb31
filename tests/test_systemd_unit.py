"""The systemd unit in docs/systemd: `systemd-analyze verify` accepts it without a warning (with its command pointed at
this environment's `dos-edge`), it runs as a dedicated user with its state directory and hardening, and the command
lines it starts are ones the CLI accepts (checked with --check-config against the example config)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "docs" / "systemd" / "dos-edge-agent.service"
EXAMPLE = REPO / "docs" / "agent.example.toml"
INSTALLED_COMMAND = "/usr/local/bin/dos-edge"
DOS_EDGE = Path(sys.executable).parent / "dos-edge"


def unit_entries() -> list[tuple[str, str, str]]:
    """(section, key, value) of every setting, in order (systemd allows a key more than once)."""
    entries = []
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        entries.append((section, key.strip(), value.strip()))
    return entries


def setting(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in unit_entries() if s == section and k == key]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    here = tmp_path / UNIT.name
    here.write_text(UNIT.read_text().replace(INSTALLED_COMMAND, str(DOS_EDGE)))
    if analyze is None:  # no systemd on this machine: the parse-level checks below are all there is
        assert unit_entries()
        return
    result = subprocess.run([analyze, "verify", str(here)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # unknown keys are only warnings: none allowed


def test_unit_runs_as_a_dedicated_user_with_hardening() -> None:
    assert setting("Type") == ["simple"]
    assert setting("User") == ["dos-edge"] and setting("Group") == ["dos-edge"]
    assert setting("StateDirectory") == ["dos-edge"] and setting("StateDirectoryMode") == ["0700"]
    assert setting("UMask") == ["0077"]  # registry and outbox files come out 0600
    assert setting("Restart") == ["on-failure"]
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                       ("ProtectHome", "yes"), ("CapabilityBoundingSet", "")]:
        assert setting(key) == [value], key
    assert setting("ReadWritePaths") == ["/var/lib/dos-edge"]
    assert setting("WantedBy", "Install") == ["multi-user.target"]


@pytest.mark.parametrize("key", ["ExecStartPre", "ExecStart"])
def test_unit_command_lines_are_accepted_by_the_cli(key: str, tmp_path: Path) -> None:
    (command,) = setting(key)
    argv = shlex.split(command)
    assert argv[0] == INSTALLED_COMMAND
    assert argv[1:3] == ["agent", "run"]
    config_at = argv.index("--config") + 1
    config = tmp_path / "agent.toml"
    config.write_text(EXAMPLE.read_text().replace("/var/lib/dos-edge/", f"{tmp_path}/"))
    argv[config_at] = str(config)
    check = [] if "--check-config" in argv else ["--check-config"]
    result = subprocess.run([str(DOS_EDGE), *argv[1:], *check], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f'"registry": "{tmp_path}/registry.sqlite"' in result.stdout
