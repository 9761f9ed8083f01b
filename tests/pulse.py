"""A private PulseAudio server with two null sinks: the sound card the tests run against.

What is played into the `va_mic` sink is what PyAudio's default input
captures (PULSE_SOURCE=va_mic.monitor); PyAudio's default output plays into
`va_speaker` (PULSE_SINK), whose monitor the tests record. The server runs in
a temporary directory of its own and never touches the user's session.

A missing `pulseaudio` is an error, not a reason to skip: CI installs it, and
a silently skipped audio suite would hide every device regression.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

MIC_SINK = "va_mic"
SPEAKER_SINK = "va_speaker"
DEFAULT_SINK = "va_default"
"""PulseAudio's default sink and source (its monitor); nothing plays or records there."""
SINK_RATE = 48_000
"""Both null sinks run at 48 kHz mono, like a typical USB codec."""

_TOOLS = ("pulseaudio", "pactl", "pacat", "paplay")
_KEEPALIVE_LATENCY_MS = 10


class PulseError(RuntimeError):
    """The PulseAudio harness could not be started or driven."""


_INSTALL_HINT = "apt-get install pulseaudio pulseaudio-utils libasound2-plugins"
_ALSA_PULSE_PLUGIN = "libasound_module_pcm_pulse.so"
"""ALSA's "pulse" PCM: without it PyAudio cannot reach the server at all."""


def _require_tools() -> dict[str, str]:
    found = {tool: shutil.which(tool) for tool in _TOOLS}
    missing = [tool for tool, path in found.items() if path is None]
    plugin_dirs = ("/usr/lib/*/alsa-lib", "/usr/lib/alsa-lib", "/usr/lib64/alsa-lib")
    if not any(glob.glob(f"{d}/{_ALSA_PULSE_PLUGIN}") for d in plugin_dirs):
        missing.append(f"ALSA's PulseAudio plugin ({_ALSA_PULSE_PLUGIN})")
    if missing:
        raise PulseError(
            f"missing {', '.join(missing)}: the audio tests need a PulseAudio server "
            f"reachable from PyAudio ({_INSTALL_HINT})"
        )
    return {tool: path for tool, path in found.items() if path is not None}


class PulseServer:
    """A `pulseaudio` subprocess with the va_mic and va_speaker null sinks.

    `name` says which sound server it is; tests/pipewire.py's PipeWireServer is the same
    harness on PipeWire (its PulseAudio side is what the clients and pactl talk to).
    """

    name = "pulseaudio"

    def __init__(self) -> None:
        self._tools = _require_tools()
        self._dir = Path(tempfile.mkdtemp(prefix=f"va-{self.name}-"))
        self._socket = self._socket_path()
        self._log_path = self._dir / f"{self.name}.log"
        self._daemons: list[subprocess.Popen[bytes]] = []
        """Every server process, started in order (stopped in reverse)."""
        self._modules: dict[str, int] = {}
        self._keepalives: dict[str, subprocess.Popen[bytes]] = {}
        self._players: list[subprocess.Popen[bytes]] = []
        client_conf = self._write_client_conf()
        self.env: dict[str, str] = {
            "PULSE_SERVER": f"unix:{self._socket}",
            "PULSE_SOURCE": f"{MIC_SINK}.monitor",
            "PULSE_SINK": SPEAKER_SINK,
            "PULSE_CLIENTCONFIG": str(client_conf),
        }
        """What a client process needs: set these before PyAudio opens a device."""

    def _write_client_conf(self) -> Path:
        # Without this a client whose server vanished would spawn the user's own.
        path = self._dir / "client.conf"
        path.write_text("autospawn = no\n")
        return path

    @property
    def directory(self) -> Path:
        return self._dir

    def _socket_path(self) -> Path:
        return self._dir / "native"

    def _server_environment(self) -> dict[str, str]:
        """The daemons' environment: private directories, nothing of the user's session."""
        runtime = self._dir / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        daemon_env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PULSE_", "PIPEWIRE_", "DBUS_"))
        }
        daemon_env.update(
            HOME=str(self._dir),
            XDG_RUNTIME_DIR=str(runtime),
            XDG_CONFIG_HOME=str(self._dir / "config"),
            XDG_STATE_HOME=str(self._dir / "state"),
        )
        return daemon_env

    def _spawn(
        self, command: list[str], env: dict[str, str], log_name: str
    ) -> subprocess.Popen[bytes]:
        """Start a server process that dies with this one (a killed test run leaves none)."""
        setpriv = shutil.which("setpriv")
        die_with_us = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
        with (self._dir / log_name).open("wb") as log:
            process = subprocess.Popen(
                [*die_with_us, *command], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self._daemons.append(process)
        return process

    def _start_daemons(self) -> None:
        """PulseAudio itself, on a socket of its own."""
        daemon_env = self._server_environment()
        runtime = Path(daemon_env["XDG_RUNTIME_DIR"])
        # Unloading a sink must behave like unplugging a card: its streams end
        # with an error. PulseAudio's default instead moves them to whatever
        # device is left, so the microphone would silently record the speaker.
        daemon_conf = self._dir / "daemon.conf"
        daemon_conf.write_text("rescue-streams = no\n")
        daemon_env.update(
            PULSE_RUNTIME_PATH=str(runtime / "pulse"),
            PULSE_STATE_PATH=str(self._dir / "state"),
            PULSE_CONFIG=str(daemon_conf),
        )
        command = [
            self._tools["pulseaudio"],
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "--use-pid-file=no",
            "--system=no",
            "--realtime=no",
            "--high-priority=no",
            "--log-target=stderr",
            "-n",
            f"--load=module-native-protocol-unix socket={self._socket} auth-anonymous=1",
        ]
        self._spawn(command, daemon_env, self._log_path.name)

    def start(self, timeout: float = 15.0) -> None:
        """Start the server, wait until it answers, and load both sinks."""
        self._start_daemons()
        deadline = time.monotonic() + timeout
        self._until_done(lambda: self.pactl("info"), deadline, f"answer within {timeout} s")
        # The defaults stay on a sink no test unloads: when the default device
        # goes, PulseAudio moves the streams that were on it to the new default
        # whatever rescue-streams says.
        self.pactl("load-module", "module-null-sink", f"sink_name={DEFAULT_SINK}")

        def set_defaults() -> None:
            self.pactl("set-default-sink", DEFAULT_SINK)
            self.pactl("set-default-source", f"{DEFAULT_SINK}.monitor")

        # pipewire-pulse answers before WirePlumber keeps the defaults ("Not supported"
        # until then, seen on a loaded machine).
        self._until_done(set_defaults, deadline, f"keep its defaults within {timeout} s")
        self.load_sink(MIC_SINK)
        self.load_sink(SPEAKER_SINK)

    def _until_done(self, call: Callable[[], object], deadline: float, what: str) -> None:
        """Repeat `call` until it stops raising PulseError; by `deadline`, or if a daemon
        exits meanwhile, stop everything and raise."""
        while True:
            if ended := [d for d in self._daemons if d.poll() is not None]:
                self.stop()
                raise PulseError(f"{self.name} exited with {ended[0].returncode}: {self._log()}")
            try:
                call()
                return
            except PulseError as exc:
                if time.monotonic() > deadline:  # the deadline bounds the wait
                    self.stop()
                    raise PulseError(f"{self.name} did not {what}: {exc}: {self._log()}") from exc
            time.sleep(0.05)

    def exited(self) -> str | None:
        """Why the server is gone, with its log, if one of its daemons has exited (a crash
        in one test would otherwise surface as "connection refused" in every later one)."""
        ended = [d for d in self._daemons if d.poll() is not None]
        if not ended:
            return None
        return f"{self.name} exited with {ended[0].returncode}: {self._log(200)}"

    def restart(self) -> None:
        """Start afresh in the same place (same socket, same client environment), after
        `exited` said it was gone."""
        self.stop()
        self._dir.mkdir(mode=0o700)
        self._write_client_conf()
        self.start()

    def stop(self) -> None:
        """Stop every helper process and the daemon, and delete the directory."""
        for name in list(self._keepalives):
            self._stop_keepalive(name)
        for player in self._players:
            _end(player)
        self._players.clear()
        while self._daemons:
            _end(self._daemons.pop())
        self._modules.clear()
        # A leftover socket or log in /tmp is harmless; a failed cleanup must
        # not mask the test result.
        shutil.rmtree(self._dir, ignore_errors=True)

    def client_env(self) -> dict[str, str]:
        """The current environment with this server's variables on top."""
        return {**os.environ, **self.env}

    def pactl(self, *args: str) -> str:
        try:
            done = subprocess.run(
                [self._tools["pactl"], *args],
                env=self.client_env(),
                capture_output=True,
                text=True,
                timeout=10,
            )
        except subprocess.TimeoutExpired as exc:
            raise PulseError(f"pactl {' '.join(args)} hung: {self._log()}") from exc
        if done.returncode != 0:
            raise PulseError(f"pactl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def load_sink(self, name: str) -> None:
        """Create (or re-create, after unload_sink) a 48 kHz mono null sink."""
        if name in self._modules:
            raise PulseError(f"sink {name} is already loaded")
        index = self.pactl(
            "load-module",
            "module-null-sink",
            f"sink_name={name}",
            f"rate={SINK_RATE}",
            "channels=1",
            "format=s16le",
            f"sink_properties=device.description={name}",
        )
        self._modules[name] = int(index.strip())
        self._start_keepalive(name)
        self._wait_for_reader(f"{name}.monitor")
        # A null sink with no low-latency client renders in 2 s blocks, and a
        # new client waits for the block in progress to end. The keepalive
        # lowers the block size from then on; suspending and resuming ends
        # the 2 s block the sink started when it was created.
        self.pactl("suspend-sink", name, "1")
        self.pactl("suspend-sink", name, "0")

    def unload_sink(self, name: str) -> None:
        """Remove a sink and its monitor, as if the device were unplugged."""
        self._stop_keepalive(name)
        self.pactl("unload-module", str(self._modules.pop(name)))

    def load_echo_path(self, delay_ms: int, gain_db: float = 0.0) -> int:
        """A room: what the speaker plays reaches the microphone `delay_ms` later, at
        `gain_db` (module-loopback from the speaker sink's monitor into the mic sink).
        Returns the module index for `unload_echo_path`."""
        index = int(
            self.pactl(
                "load-module",
                "module-loopback",
                f"source={SPEAKER_SINK}.monitor",
                f"sink={MIC_SINK}",
                f"latency_msec={delay_ms}",
                # A room's delay holds still; the loopback's own rate adjustments (for
                # two clocks that drift, which these null sinks share) would not.
                "adjust_time=0",
                "source_dont_move=true",
                "sink_dont_move=true",
                "sink_input_properties=media.name=va-echo-path",
            ).strip()
        )
        for line in self.pactl("list", "short", "sink-inputs").splitlines():
            fields = line.split("\t")
            if len(fields) > 2 and fields[2] == str(index):
                # Relative to the loopback's 100 %; "--" lets a negative value through.
                self.pactl("--", "set-sink-input-volume", fields[0], f"{gain_db:+.1f}dB")
        return index

    def unload_echo_path(self, index: int) -> None:
        self.pactl("unload-module", str(index))

    def play_into_mic(
        self, audio: Path | tuple[np.ndarray, int], latency_ms: int = 20
    ) -> subprocess.Popen[bytes]:
        """Start playing a WAV file, or (int16 samples, rate), into the microphone.

        Returns the running `paplay`; wait on it (in a thread from async code).
        """
        if isinstance(audio, tuple):
            samples, rate = audio
            path = self._dir / f"mic-{time.monotonic_ns()}.wav"
            write_wav(path, samples, rate)
        else:
            path = audio
        player = subprocess.Popen(
            [
                self._tools["paplay"],
                f"--device={MIC_SINK}",
                f"--latency-msec={latency_ms}",
                str(path),
            ],
            env=self.client_env(),
        )
        self._players = [p for p in self._players if p.poll() is None]
        self._players.append(player)
        return player

    def start_recording_speaker(
        self, path: Path | None = None, rate: int = SINK_RATE
    ) -> SpeakerRecording:
        """Record what reaches the speaker sink, as 16-bit mono at `rate`."""
        return SpeakerRecording(self, f"{SPEAKER_SINK}.monitor", path, rate)

    def start_recording_mic(self, rate: int = SINK_RATE) -> SpeakerRecording:
        """Record what reaches the microphone sink (what the microphone hears)."""
        return SpeakerRecording(self, f"{MIC_SINK}.monitor", None, rate)

    def record_command(self, device: str, rate: int, latency_ms: int) -> list[str]:
        return [
            self._tools["pacat"],
            "--record",
            "--raw",
            f"--device={device}",
            "--format=s16le",
            f"--rate={rate}",
            "--channels=1",
            f"--latency-msec={latency_ms}",
        ]

    def _start_keepalive(self, name: str) -> None:
        # A permanent 10 ms reader keeps the sink rendering in small steps,
        # the way a sound card's clock would: without one, a microphone
        # opening on the monitor could see nothing for up to 2 s.
        self._keepalives[name] = subprocess.Popen(
            self.record_command(f"{name}.monitor", SINK_RATE, _KEEPALIVE_LATENCY_MS),
            env=self.client_env(),
            stdout=subprocess.DEVNULL,
        )

    def _wait_for_reader(self, source: str, timeout: float = 5.0) -> None:
        """Block until some client records from `source`."""
        deadline = time.monotonic() + timeout
        while True:
            indices = {
                fields[1]: fields[0]
                for line in self.pactl("list", "short", "sources").splitlines()
                if len(fields := line.split("\t")) > 1
            }
            readers = {
                line.split("\t")[1]
                for line in self.pactl("list", "short", "source-outputs").splitlines()
                if "\t" in line
            }
            if indices.get(source) in readers:
                return
            if time.monotonic() > deadline:
                raise PulseError(f"no reader connected to {source} within {timeout} s")
            time.sleep(0.02)

    def _stop_keepalive(self, name: str) -> None:
        process = self._keepalives.pop(name, None)
        if process is not None:
            _end(process)

    def _log(self, lines: int = 20) -> str:
        """The last lines of every server log."""
        tails = []
        for path in sorted(self._dir.glob("*.log")):
            text = path.read_text(errors="replace")
            tails.append(f"{path.name}:\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(tails) or "(no log)"


class SpeakerRecording:
    """What the speaker sink plays, captured live, with when each sample was heard.

    `pacat --record` (what `parecord` is) streams raw samples to a reader
    thread that notes when each chunk arrived. A sample cannot arrive before it
    was played, so the earliest arrival, less the samples before it, bounds
    when sample 0 was played: `time_of` never claims a sample sounded earlier
    than it did, and overstates by at most the fastest delivery (~10 ms).
    """

    def __init__(
        self, server: PulseServer, device: str, path: Path | None, rate: int, latency_ms: int = 10
    ) -> None:
        self.rate = rate
        self._path = path
        self._chunks: list[bytes] = []
        self._received = 0
        self._origin = float("inf")
        self._lock = threading.Lock()
        self._process = subprocess.Popen(
            server.record_command(device, rate, latency_ms),
            env=server.client_env(),
            stdout=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, name="speaker-recording", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        fd = self._process.stdout.fileno()
        while chunk := os.read(fd, 1 << 16):
            arrived = time.monotonic()
            with self._lock:
                self._chunks.append(chunk)
                self._received += len(chunk)
                self._origin = min(self._origin, arrived - (self._received // 2) / self.rate)

    @property
    def frames(self) -> int:
        with self._lock:
            return self._received // 2

    def time_of(self, index: int) -> float:
        """time.monotonic() (an upper bound) at which sample `index` was played."""
        with self._lock:
            return self._origin + index / self.rate

    def index_at(self, t: float) -> int:
        """The sample played at monotonic time `t` (inverse of `time_of`)."""
        with self._lock:
            return round((t - self._origin) * self.rate)

    def samples(self) -> np.ndarray:
        with self._lock:
            data = b"".join(self._chunks)
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)

    def stop(self) -> np.ndarray:
        """End the recording, write the WAV if a path was given, return the samples."""
        _end(self._process)
        self._reader.join(5)
        assert self._process.stdout is not None
        self._process.stdout.close()
        samples = self.samples()
        if self._path is not None:
            write_wav(self._path, samples, self.rate)
        return samples


def _end(process: subprocess.Popen[bytes]) -> None:
    """Terminate a helper process, killing it if it does not go."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """A mono 16-bit WAV file."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.asarray(samples, dtype="<i2").tobytes())
