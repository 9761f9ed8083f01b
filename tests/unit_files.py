"""Reading the shipped systemd units, and running systemd-analyze on them."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_UNIT = ROOT / "systemd" / "voice-assistant.service"
USER_UNIT = ROOT / "systemd" / "voice-assistant-user.service"
INSTALL = ROOT / "systemd" / "install.sh"
UNINSTALL = ROOT / "systemd" / "uninstall.sh"
INSTALLED_COMMAND = "/opt/voice-assistant/venv/bin/voice-assistant"
"""The program every unit's ExecStart runs, where install.sh puts it."""


def settings(unit: Path) -> dict[str, list[str]]:
    """Every `Key=value` of the unit as "Section.Key" -> its values in order (a key may be
    given more than once); comments and blank lines left out."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def exec_start(unit: Path) -> list[str]:
    [command] = settings(unit)["Service.ExecStart"]
    return shlex.split(command)


def analyze() -> str:
    """systemd-analyze's path; the test set-up installs the `systemd` package for it."""
    path = shutil.which("systemd-analyze")
    assert path is not None, "systemd-analyze missing: ./manage.sh test installs `systemd`"
    return path


def with_command(unit: Path, command: Path, target: Path) -> Path:
    """A copy of `unit` at `target` whose ExecStart runs `command` instead of the installed
    program: `verify` checks that the program exists, which it does only once installed."""
    text = unit.read_text().replace(INSTALLED_COMMAND, str(command))
    target.write_text(text)
    return target


EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")


def exposure(unit: Path, *, user: bool = False) -> float:
    """`systemd-analyze security --offline=true`'s overall exposure (0 = safe, 10 = unsafe)."""
    args = [analyze(), "security", "--offline=true", *(["--user"] if user else []), str(unit)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    match = EXPOSURE.search(done.stdout)
    assert match, f"no exposure level in:\n{done.stdout}\n{done.stderr}"
    return float(match.group(1))
