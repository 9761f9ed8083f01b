"""The same sound-card harness as tests/pulse.py, on PipeWire: what Raspberry Pi OS desktop
runs (its raspi-config no longer offers PulseAudio).

A private PipeWire: the `pipewire` daemon, its session manager WirePlumber, and
`pipewire-pulse` (PipeWire's PulseAudio server, which the assistant reaches through ALSA's
pulse plugin and the harness drives with pactl, pacat and paplay, null sinks included).
WirePlumber wants a D-Bus session bus, so a private `dbus-daemon` runs first. Everything
lives in a temporary directory of its own (XDG_RUNTIME_DIR, HOME, the bus, the logs) and
never touches a user's session.

Like PulseAudio with `rescue-streams = no`, a vanished device must end its streams rather
than have them moved to whatever device is left: every stream pipewire-pulse makes is
`node.dont-reconnect`, so WirePlumber destroys it (the client gets "Entity killed") instead
of linking it to the default device.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from pulse import PulseError, PulseServer

_TOOLS = ("pipewire", "wireplumber", "pipewire-pulse", "dbus-daemon")
_INSTALL_HINT = "apt-get install pipewire pipewire-pulse wireplumber dbus-daemon"

_NO_RESCUE = """\
# Streams stay on the device they were put on: one whose device vanishes ends with an
# error instead of moving to another (as a sound card's unplugging does to ALSA).
stream.properties = {
    node.dont-reconnect = true
}
"""


class PipeWireServer(PulseServer):
    """PipeWire with pipewire-pulse, WirePlumber and a D-Bus session bus of its own."""

    name = "pipewire"

    def _socket_path(self) -> Path:
        return self._dir / "runtime" / "pulse" / "native"

    def start(self, timeout: float = 15.0) -> None:
        super().start(timeout)
        info = self.pactl("info")
        if "PipeWire" not in info:  # a PulseAudio answered: these tests would prove nothing
            self.stop()
            raise PulseError(f"the server at {self._socket} is not PipeWire:\n{info}")

    def _start_daemons(self) -> None:
        tools = {tool: shutil.which(tool) for tool in _TOOLS}
        missing = [tool for tool, path in tools.items() if path is None]
        if missing:
            raise PulseError(
                f"missing {', '.join(missing)}: the PipeWire tests need them ({_INSTALL_HINT})"
            )
        env = self._server_environment()
        config = Path(env["XDG_CONFIG_HOME"])
        drop_ins = config / "pipewire" / "pipewire-pulse.conf.d"
        drop_ins.mkdir(parents=True)
        (drop_ins / "no-rescue.conf").write_text(_NO_RESCUE)
        bus = self._dir / "bus"
        self._spawn(
            [str(tools["dbus-daemon"]), "--session", "--nofork", "--nopidfile",
             f"--address=unix:path={bus}"],
            env,
            "dbus.log",
        )  # fmt: skip
        _wait_for(bus, self._log)
        env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={bus}"
        self._spawn([str(tools["pipewire"])], env, "pipewire.log")
        _wait_for(Path(env["XDG_RUNTIME_DIR"]) / "pipewire-0", self._log)
        self._spawn([str(tools["wireplumber"])], env, "wireplumber.log")
        self._spawn([str(tools["pipewire-pulse"])], env, "pipewire-pulse.log")


def _wait_for(path: Path, log: object, timeout: float = 10.0) -> None:
    """Until `path` (a daemon's socket) exists."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise PulseError(f"{path} did not appear within {timeout} s: {log()}")  # type: ignore[operator]
        time.sleep(0.02)
