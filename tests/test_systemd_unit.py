"""The shipped units: valid for systemd, hardened, and saying what the assistant needs.

`systemd-analyze` runs without a running systemd (`verify`, `security --offline=true`); the
test set-up installs the `systemd` package for it. Running the unit's command line the way
systemd would is in test_install.py, on an installed copy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from unit_files import SYSTEM_UNIT, USER_UNIT, analyze, exposure, settings, with_command

MAX_EXPOSURE = 2.0
COMMAND = Path(sys.executable).parent / "voice-assistant"
"""This venv's program stands in for the installed one (verify checks that it exists)."""


def test_the_system_unit_verifies(tmp_path: Path) -> None:
    unit = with_command(SYSTEM_UNIT, COMMAND, tmp_path / "voice-assistant.service")
    done = subprocess.run(
        [analyze(), "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # not even a warning


def test_the_user_unit_verifies(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)  # a user manager needs its runtime directory
    unit = with_command(USER_UNIT, COMMAND, tmp_path / "voice-assistant.service")
    done = subprocess.run(
        [analyze(), "verify", "--user", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(runtime)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_the_system_unit_is_hardened() -> None:
    level = exposure(SYSTEM_UNIT)
    assert level <= MAX_EXPOSURE, f"exposure {level} > {MAX_EXPOSURE}: see systemd-analyze security"


def test_the_system_unit_allows_only_the_devices_it_needs() -> None:
    unit = settings(SYSTEM_UNIT)
    assert unit["Service.DevicePolicy"] == ["closed"]
    assert sorted(unit["Service.DeviceAllow"]) == ["char-alsa rw", "char-gpiochip rw"]
    assert unit.get("Service.PrivateNetwork", ["no"]) == ["no"]  # it must reach Dify


def test_the_units_say_how_the_assistant_runs() -> None:
    for path in (SYSTEM_UNIT, USER_UNIT):
        unit = settings(path)
        assert unit["Service.Type"] == ["notify"], path
        assert unit["Service.RestartPreventExitStatus"] == ["2"], path  # config errors stay down
        assert unit["Service.Restart"] == ["on-failure"], path
        assert unit["Service.StateDirectory"] == ["voice-assistant"], path
        [credential] = unit["Service.LoadCredential"]
        assert credential.startswith("dify-api-key:"), path
        assert "--config" in unit["Service.ExecStart"][0], path
    system = settings(SYSTEM_UNIT)
    assert system["Service.User"] == ["voice-assistant"]
    assert system["Service.LoadCredential"] == [
        "dify-api-key:/etc/voice-assistant/credentials/dify-api-key"
    ]
    assert system["Install.WantedBy"] == ["multi-user.target"]
    assert settings(USER_UNIT)["Install.WantedBy"] == ["default.target"]
