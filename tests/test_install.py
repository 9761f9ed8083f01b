"""systemd/install.sh into a scratch root: the files, modes and owners it writes, a second
run that keeps what it must, the unit's own command line run as the service user the way
systemd would run it (it starts), and uninstall.sh undoing it all.

The package is installed from this checkout into a real venv under the scratch root, from
`.venv/wheelhouse` (the test set-up fills it through pip), so nothing is downloaded here.
The service user is created on this machine (it owns the files), with a name of the
test's own, and removed by `uninstall.sh --purge` at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from notify import notify_socket, ready_then_stopped
from pulse import PulseServer
from unit_files import (
    INSTALL,
    INSTALLED_COMMAND,
    ROOT,
    SYSTEM_UNIT,
    UNINSTALL,
    USER_UNIT,
    exec_start,
    settings,
)

from assistant.devserver import RunningDevServer

WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
SERVICE_USER = "va-itest"
KEY = "app-INSTALL-test-5d2a"
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The PATH systemd gives a service."""
DENY_WRITE_EXECUTE = """
import ctypes, os, sys
# The unit's MemoryDenyWriteExecute=yes, as the kernel's own prctl (PR_SET_MDWE,
# PR_MDWE_REFUSE_EXEC_GAIN), kept across the exec: the assistant (ctypes callbacks,
# numpy, PyAV) must run without writable executable memory.
if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:
    # Before Linux 6.3 there is no such prctl (systemd uses a seccomp filter instead).
    print("no PR_SET_MDWE:", os.strerror(ctypes.get_errno()), file=sys.stderr)
os.execv(sys.argv[1], sys.argv[1:])
"""


@dataclass(frozen=True, slots=True)
class Installed:
    root: Path
    first_output: str

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")


def _run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _install_env() -> dict[str, str]:
    assert any(WHEELHOUSE.glob("*.whl")), (
        f"no wheels in {WHEELHOUSE}: ./manage.sh test fills it (pip wheel) before the tests"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "DIFY_"))}
    return {**env, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE)}


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    if os.geteuid() != 0:
        pytest.fail("install.sh runs as root (CI does); run the tests as root", pytrace=False)
    # Under /tmp, not pytest's 0700 directory: the service user must reach the venv.
    root = Path(tempfile.mkdtemp(prefix="va-install-"))
    root.chmod(0o755)
    key = root / "key.txt"
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    try:
        output = _run(
            INSTALL, "--root", root, "--user", SERVICE_USER, "--key-file", key, env=_install_env()
        )
        key.unlink()
        yield Installed(root, output)
    finally:
        with contextlib.suppress(AssertionError):
            _run(UNINSTALL, "--root", root, "--purge")
        shutil.rmtree(root, ignore_errors=True)


def _mode_owner(path: Path) -> tuple[int, str, str]:
    st = path.lstat()
    owner, group = pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name
    return stat.S_IMODE(st.st_mode), owner, group


def test_it_writes_what_the_unit_needs_with_the_right_modes(installed: Installed) -> None:
    etc = installed.path("/etc/voice-assistant")
    assert _mode_owner(etc / "assistant.toml") == (0o640, "root", SERVICE_USER)
    assert (etc / "assistant.toml").read_text() == (ROOT / "config/assistant.toml").read_text()
    assert _mode_owner(etc / "credentials") == (0o700, "root", "root")
    assert _mode_owner(etc / "credentials/dify-api-key") == (0o600, "root", "root")
    assert (etc / "credentials/dify-api-key").read_text().strip() == KEY
    assert KEY not in installed.first_output
    unit = installed.path("/etc/systemd/system/voice-assistant.service")
    assert _mode_owner(unit) == (0o644, "root", "root")
    assert settings(unit)["Service.User"] == [SERVICE_USER]
    assert settings(unit)["Service.ExecStart"] == settings(SYSTEM_UNIT)["Service.ExecStart"]
    wants = installed.path("/etc/systemd/system/multi-user.target.wants/voice-assistant.service")
    assert os.readlink(wants) == "/etc/systemd/system/voice-assistant.service"
    assert "journalctl -u voice-assistant -f" in installed.first_output


def test_the_service_user_is_a_system_user_in_audio(installed: Installed) -> None:
    user = pwd.getpwnam(SERVICE_USER)
    assert user.pw_uid < 1000
    assert user.pw_shell.endswith("nologin")
    assert user.pw_dir == "/var/lib/voice-assistant"
    groups = {g.gr_name for g in grp.getgrall() if SERVICE_USER in g.gr_mem}
    assert "audio" in groups
    with contextlib.suppress(KeyError):
        grp.getgrnam("gpio")
        assert "gpio" in groups  # where the board has the group


def test_the_package_is_installed_not_linked_to_the_checkout(installed: Installed) -> None:
    venv = installed.path("/opt/voice-assistant/venv")
    python = venv / "bin/python"
    # -I: not the checkout in the working directory, only what the venv holds.
    where = _run(python, "-I", "-c", "import assistant, hardware; print(assistant.__file__)")
    assert Path(where.strip()).is_relative_to(venv)
    # On the system's interpreter, which the service user can run (not one under /root).
    assert os.path.realpath(python).startswith("/usr/")
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert not list(site.glob("__editable__*")) and not list(site.glob("*.egg-link"))
    assert (venv / "portaudio/lib/libportaudio.so.2").is_file()  # the fixed build
    version = _run(installed.path(INSTALLED_COMMAND), "--version")
    assert version.startswith("voice-assistant ")
    link = installed.path("/usr/local/bin/voice-assistant")
    assert os.readlink(link) == INSTALLED_COMMAND


def test_a_second_run_keeps_the_config_and_the_key(installed: Installed) -> None:
    config = installed.path("/etc/voice-assistant/assistant.toml")
    edited = config.read_text().replace("hangover_ms = 500", "hangover_ms = 450")
    config.write_text(edited)
    output = _run(INSTALL, "--root", installed.root, "--user", SERVICE_USER, env=_install_env())
    assert config.read_text() == edited  # never overwritten
    assert "kept" in output
    credential = installed.path("/etc/voice-assistant/credentials/dify-api-key")
    assert credential.read_text().strip() == KEY
    dist = installed.path("/etc/voice-assistant/assistant.toml.dist")
    assert dist.read_text() == (ROOT / "config/assistant.toml").read_text()


DESKTOP_USER = "va-idesk"


@pytest.fixture
def desktop_user() -> Iterator[pwd.struct_passwd]:
    """A desktop user whose home is only under the scratch root (install.sh writes there)."""
    with contextlib.suppress(AssertionError):
        _run("userdel", DESKTOP_USER)
    _run("useradd", "--no-create-home", "--home-dir", f"/home/{DESKTOP_USER}", DESKTOP_USER)
    try:
        yield pwd.getpwnam(DESKTOP_USER)
    finally:
        _run("userdel", DESKTOP_USER)


def test_a_desktop_users_service_and_back(
    installed: Installed, desktop_user: pwd.struct_passwd
) -> None:
    """--desktop-user: the user unit and the key in that user's home, the system unit gone;
    then the system service again, the desktop one gone."""
    key = installed.root / "desktop-key.txt"
    key.write_text("app-desktop-key\n")
    args = [INSTALL, "--root", installed.root, "--key-file", key]
    output = _run(*args, "--desktop-user", DESKTOP_USER, env=_install_env())
    home = installed.path(desktop_user.pw_dir)
    group = grp.getgrgid(desktop_user.pw_gid).gr_name
    unit = home / ".config/systemd/user/voice-assistant.service"
    assert _mode_owner(unit) == (0o644, DESKTOP_USER, group)
    assert unit.read_text() == USER_UNIT.read_text()
    wants = home / ".config/systemd/user/default.target.wants/voice-assistant.service"
    assert (
        os.readlink(wants) == f"{desktop_user.pw_dir}/.config/systemd/user/voice-assistant.service"
    )
    credential = home / ".config/voice-assistant/dify-api-key"
    assert _mode_owner(credential) == (0o600, DESKTOP_USER, group)
    config = installed.path("/etc/voice-assistant/assistant.toml")
    assert _mode_owner(config) == (0o640, "root", group)  # the desktop user reads it
    assert credential.read_text().strip() == "app-desktop-key"
    assert not installed.path("/etc/systemd/system/voice-assistant.service").exists()
    assert "journalctl --user -u voice-assistant -f" in output
    # And back: the system service, with the key it had (the one given now is the desktop's).
    _run(INSTALL, "--root", installed.root, "--user", SERVICE_USER, env=_install_env())
    assert installed.path("/etc/systemd/system/voice-assistant.service").exists()
    assert not unit.exists() and not wants.exists()
    # The config is readable by the system service's group again.
    config = installed.path("/etc/voice-assistant/assistant.toml")
    assert _mode_owner(config) == (0o640, "root", SERVICE_USER)
    system_key = installed.path("/etc/voice-assistant/credentials/dify-api-key")
    assert system_key.read_text().strip() == KEY


def test_without_a_key_the_first_install_stops(tmp_path: Path) -> None:
    root = tmp_path / "root"
    env = {**_install_env(), "DIFY_API_KEY": ""}
    done = subprocess.run(
        [str(INSTALL), "--root", str(root), "--user", SERVICE_USER],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "no Dify key" in done.stderr


# -- the unit's command line, as systemd runs it ---------------------------------------


def _as_the_service(installed: Installed, pulse: PulseServer) -> tuple[list[str], dict[str, str]]:
    """ExecStart under the scratch root, as SERVICE_USER, with what systemd would give it:
    its credential copy (owned by the user, 0400), its state directory as working directory
    and HOME, a notify socket, and the PulseAudio harness standing in for the sound card."""
    user = pwd.getpwnam(SERVICE_USER)
    credentials = installed.path("/run/credentials/voice-assistant.service")
    credentials.mkdir(parents=True, exist_ok=True)
    copy = credentials / "dify-api-key"
    shutil.copy(installed.path("/etc/voice-assistant/credentials/dify-api-key"), copy)
    for path, mode in ((copy, 0o400), (credentials, 0o500)):
        os.chown(path, user.pw_uid, user.pw_gid)
        path.chmod(mode)
    state = installed.path("/var/lib/voice-assistant")
    state.mkdir(parents=True, exist_ok=True)
    os.chown(state, user.pw_uid, user.pw_gid)
    state.chmod(0o700)
    # The harness's directory and socket, reachable by the service user (anonymous auth).
    pulse.directory.chmod(0o711)
    command = [
        str(installed.path(arg)) if arg.startswith(("/opt/", "/etc/")) else arg
        for arg in exec_start(SYSTEM_UNIT)
    ]
    setpriv = [
        "setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
        "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--",
        "/usr/bin/python3", "-c", DENY_WRITE_EXECUTE,  # the system's: the user can run it
    ]  # fmt: skip
    env = {
        "PATH": SYSTEMD_PATH,
        "HOME": str(state),
        "USER": SERVICE_USER,
        "LOGNAME": SERVICE_USER,
        "LANG": "C.UTF-8",
        "CREDENTIALS_DIRECTORY": str(credentials),
        "STATE_DIRECTORY": str(state),
        "WATCHDOG_USEC": "30000000",
        **pulse.env,
    }
    return [*setpriv, *command], env


@pytest.mark.pulse
async def test_the_units_command_starts_as_the_service_user(
    installed: Installed, pulse: PulseServer, server: RunningDevServer
) -> None:
    config = installed.path("/etc/voice-assistant/assistant.toml")
    text = config.read_text()
    config.write_text(text.replace('"https://api.dify.ai/v1"', f'"{server.base_url}"'))
    command, env = _as_the_service(installed, pulse)
    with notify_socket(installed.path("/run/notify")) as notify:
        env["NOTIFY_SOCKET"] = str(installed.path("/run/notify"))
        process = await asyncio.create_subprocess_exec(
            *command,
            env=env,
            cwd=env["STATE_DIRECTORY"],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            run = await ready_then_stopped(process, notify, 60)
        finally:
            config.write_text(text)
    log, started, stopping = run.stderr, run.started, run.stopping
    assert run.returncode == 0, log[-3000:]
    statuses = [m for m in started if m.startswith("STATUS=")]
    assert statuses and statuses[0].startswith("STATUS=starting"), started
    assert any("STATUS=ready" in m for m in started), started
    assert any("STOPPING=1" in m for m in stopping)
    assert KEY not in log
    # The key reached Dify (the dev server) from the credential.
    assert server.state.records("parameters")


def test_uninstall_purges_everything(installed: Installed) -> None:
    """Last in the module: the fixture's own clean-up then finds nothing left to do."""
    _run(UNINSTALL, "--root", installed.root)
    assert not installed.path("/opt/voice-assistant").exists()
    assert not installed.path("/etc/systemd/system/voice-assistant.service").exists()
    assert installed.path("/etc/voice-assistant/assistant.toml").exists()  # kept
    pwd.getpwnam(SERVICE_USER)  # kept without --purge
    _run(UNINSTALL, "--root", installed.root, "--purge")
    assert not installed.path("/etc/voice-assistant").exists()
    with pytest.raises(KeyError):
        pwd.getpwnam(SERVICE_USER)
