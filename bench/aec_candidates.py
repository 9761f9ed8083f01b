"""Three echo cancellers as libraries, on bench.aec's signals: ERLE, double talk, CPU, memory.

    .venv/bin/python -m bench.aec_candidates [--json PATH] [--livekit-python PATH] [--only NAME ...]

Candidates, each called directly (none of the project's gating around it):

* `pywebrtc`: pywebrtc-audio's `EchoCanceller` (WebRTC AEC3), 20 ms blocks.
* `livekit`, `livekit-ns`: livekit's `rtc.AudioProcessingModule` (AEC3 inside WebRTC's
  APM, through livekit's Rust FFI), echo cancellation only, then with noise suppression;
  10 ms frames, stream delay 0. livekit lives in its own venv (default /work/aecvenv):
  those candidates run there, with PYTHONPATH pointing at this repository.
* `speex`, `speex-pre`: SpeexDSP's MDF echo canceller (Debian's libspeexdsp.so.1 through
  ctypes; 20 ms frames, 250 ms filter), then followed by its preprocessor with the echo
  state attached (residual echo suppression; the preprocessor's defaults otherwise, so
  its denoiser is on: without it the suppression gains are not applied).

The signals and measures are bench.aec's: espeak-ng's answer through a synthetic room
(20, 60 or 120 ms, 0 or +6 dB, one 50 ms reflection), the user's question 4 s in. ERLE
after 1 s with no one talking; the user's voice kept in double talk (level, correlation
over the first 250 ms and the rest); CPU per second of audio (process time, the whole
process's threads, after 1 s of warm-up); resident memory added by importing the library
and building one canceller (and 5 s of silent blocks through it), in a fresh child
process. Each output is aligned by the candidate's own processing lag, measured on speech
with a silent far end.

Every candidate runs in a child process: `--candidate NAME` prints its rooms as JSON,
`--memory NAME` its memory.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import functools
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from bench.aec import ANSWER, BLOCK, RATE, USER, double_talk, scene, speech

REPO = Path(__file__).resolve().parent.parent
LIVEKIT_PYTHON = Path("/work/aecvenv/bin/python")
DELAYS_MS = (20, 60, 120)
GAINS_DB = (0.0, 6.0)
SPEEX_FILTER = 4000
"""Speex's filter (tail) length: 250 ms, the 120 ms room, its reflection and then some."""
WARM_UP_S = 1.0
"""Work done before anything is timed: here the first ~0.2 s of work in a fresh process
runs at about half speed (the CPU's clock ramping up, presumably), which would double the first
rooms' CPU."""
MAX_LAG = 1600
"""The longest processing lag looked for (100 ms)."""


class Canceller(Protocol):
    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        """One 20 ms block of the microphone (int16) and of what played at the same time."""
        ...


class WebRtcAec3:
    """pywebrtc-audio's AEC3, as the library is."""

    def __init__(self) -> None:
        from pywebrtc_audio import EchoCanceller

        self._aec = EchoCanceller(sample_rate=RATE, num_channels=1)

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        return self._aec.process(near, far)


class LiveKitApm:
    """livekit's AudioProcessingModule: the far end, then the near end, 10 ms at a time."""

    FRAME = RATE // 100

    def __init__(self, noise_suppression: bool) -> None:
        from livekit import rtc

        self._frame = rtc.AudioFrame
        self._apm = rtc.AudioProcessingModule(
            echo_cancellation=True, noise_suppression=noise_suppression
        )

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        out = np.empty_like(near)
        n = self.FRAME
        for k in range(0, len(near), n):
            self._apm.process_reverse_stream(self._frame(far[k : k + n].tobytes(), RATE, 1, n))
            frame = self._frame(bytearray(near[k : k + n].tobytes()), RATE, 1, n)
            self._apm.set_stream_delay_ms(0)
            self._apm.process_stream(frame)
            out[k : k + n] = np.frombuffer(frame.data, np.int16)
        return out


# speex/speex_echo.h and speex/speex_preprocess.h (speexdsp 1.2.1)
SPEEX_ECHO_SET_SAMPLING_RATE = 24
SPEEX_PREPROCESS_SET_ECHO_STATE = 24


@functools.cache
def speexdsp() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1")
    ptr, i = ctypes.c_void_p, ctypes.c_int
    lib.speex_echo_state_init.restype = ptr
    lib.speex_echo_state_init.argtypes = [i, i]
    lib.speex_echo_state_destroy.argtypes = [ptr]
    lib.speex_echo_ctl.argtypes = [ptr, i, ptr]
    lib.speex_echo_cancellation.argtypes = [ptr, ptr, ptr, ptr]
    lib.speex_preprocess_state_init.restype = ptr
    lib.speex_preprocess_state_init.argtypes = [i, i]
    lib.speex_preprocess_state_destroy.argtypes = [ptr]
    lib.speex_preprocess_ctl.argtypes = [ptr, i, ptr]
    lib.speex_preprocess_run.argtypes = [ptr, ptr]
    return lib


class SpeexMdf:
    """SpeexDSP's echo canceller, optionally followed by its residual echo suppressor."""

    def __init__(self, preprocess: bool) -> None:
        self._lib = lib = speexdsp()
        self._echo = lib.speex_echo_state_init(BLOCK, SPEEX_FILTER)
        rate = ctypes.c_int32(RATE)
        lib.speex_echo_ctl(self._echo, SPEEX_ECHO_SET_SAMPLING_RATE, ctypes.byref(rate))
        self._pre = None
        if preprocess:
            self._pre = lib.speex_preprocess_state_init(BLOCK, RATE)
            lib.speex_preprocess_ctl(self._pre, SPEEX_PREPROCESS_SET_ECHO_STATE, self._echo)

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        near, far = np.ascontiguousarray(near), np.ascontiguousarray(far)
        out = np.empty_like(near)
        self._lib.speex_echo_cancellation(
            self._echo, near.ctypes.data, far.ctypes.data, out.ctypes.data
        )
        if self._pre is not None:
            self._lib.speex_preprocess_run(self._pre, out.ctypes.data)
        return out

    def __del__(self) -> None:
        if self._pre is not None:
            self._lib.speex_preprocess_state_destroy(self._pre)
        self._lib.speex_echo_state_destroy(self._echo)


def _speex_version() -> str:
    """The file the loader mapped for libspeexdsp (its version is in the name)."""
    speexdsp()
    for line in Path("/proc/self/maps").read_text().splitlines():
        if "libspeexdsp" in line:
            return Path(line.split()[-1]).name
    return "libspeexdsp"


def _package(name: str) -> Callable[[], str]:
    """The installed version of a PyPI package, read when asked (in the child that has it)."""
    return lambda: f"{name} {importlib.metadata.version(name)}"


@dataclass(frozen=True)
class Candidate:
    name: str
    label: str
    make: Callable[[], Canceller]
    version: Callable[[], str]
    livekit: bool = False
    """Runs in livekit's venv."""


CANDIDATES = {
    c.name: c
    for c in (
        Candidate("pywebrtc", "pywebrtc-audio AEC3", WebRtcAec3, _package("pywebrtc-audio")),
        Candidate(
            "livekit",
            "livekit APM (AEC3)",
            lambda: LiveKitApm(noise_suppression=False),
            _package("livekit"),
            livekit=True,
        ),
        Candidate(
            "livekit-ns",
            "livekit APM (AEC3 + NS)",
            lambda: LiveKitApm(noise_suppression=True),
            _package("livekit"),
            livekit=True,
        ),
        Candidate("speex", "SpeexDSP MDF", lambda: SpeexMdf(False), _speex_version),
        Candidate("speex-pre", "SpeexDSP MDF + preprocess", lambda: SpeexMdf(True), _speex_version),
    )
}


@dataclass
class Room:
    delay_ms: int
    gain_db: float
    erle_db: float
    user_kept_db: float
    corr_onset: float
    corr_rest: float
    cpu_per_s: float


@functools.cache
def voices() -> tuple[np.ndarray, np.ndarray]:
    """The answer and the user's question, as bench.aec synthesises them."""
    return speech(ANSWER, "en"), speech(USER, "en+m3")


def through(canceller: Canceller, near: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, float]:
    """`near` through the canceller block by block while `far` plays; (output, CPU s)."""
    near16 = np.clip(near, -32768, 32767).astype(np.int16)
    far16 = far.astype(np.int16)
    out = []
    started = time.process_time()
    for i in range(0, len(near16) - BLOCK + 1, BLOCK):
        out.append(canceller.process(near16[i : i + BLOCK], far16[i : i + BLOCK]))
    return np.concatenate(out).astype(np.float64), time.process_time() - started


def processing_lag(make: Callable[[], Canceller]) -> int:
    """Samples by which the output trails the input: the question, with nothing playing."""
    _, question = voices()
    near = np.concatenate([np.zeros(RATE // 2), question])
    out, _ = through(make(), near, np.zeros_like(near))
    near = near[: len(out)]
    return max(range(MAX_LAG), key=lambda k: float(np.dot(out[k:], near[: len(near) - k])))


def measure(make: Callable[[], Canceller], lag: int, delay_ms: int, gain_db: float) -> Room:
    s = scene(delay_ms, gain_db, *voices())
    alone, cpu = through(make(), s.echo, s.far)
    both, _ = through(make(), s.echo + s.user, s.far)
    scored = double_talk(s, alone[lag:], both[lag:])
    return Room(
        delay_ms,
        gain_db,
        scored.erle_db,
        scored.user_kept_db,
        scored.corr_onset,
        scored.corr_rest,
        cpu / scored.seconds,
    )


def run_candidate(name: str) -> dict:
    """In the child: every room for one candidate."""
    candidate = CANDIDATES[name]
    lag = processing_lag(candidate.make)
    warm_up = time.monotonic() + WARM_UP_S
    while time.monotonic() < warm_up:
        measure(candidate.make, lag, DELAYS_MS[0], GAINS_DB[0])
    rooms = [measure(candidate.make, lag, d, g) for d in DELAYS_MS for g in GAINS_DB]
    return {
        "version": candidate.version(),
        "lag_ms": lag / RATE * 1000,
        "rooms": [asdict(r) for r in rooms],
    }


def vm_rss_mb() -> float:
    """This process's VmRSS in MB (bench.idle.memory_mb's, but importable in livekit's venv,
    which has not the dev server's dependencies bench.idle brings)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def run_memory(name: str) -> dict:
    """In a fresh child: memory added by the library and one canceller (like bench.aec)."""
    before = vm_rss_mb()
    canceller = CANDIDATES[name].make()
    silence = np.zeros(BLOCK, np.int16)
    for _ in range(250):
        canceller.process(silence, silence)
    return {"memory_mb": vm_rss_mb() - before}


def child(name: str, flag: str, python: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [str(python), "-m", "bench.aec_candidates", flag, name],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
    return json.loads(done.stdout)


def table(results: dict[str, dict]) -> str:
    lines = [
        "| candidate | room | ERLE after 1 s | user's voice kept "
        "| correlation: first 250 ms / rest | CPU per s of audio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, result in results.items():
        for r in result.get("rooms", []):
            lines.append(
                f"| {CANDIDATES[name].label} | {r['delay_ms']} ms, {r['gain_db']:+.0f} dB "
                f"| {r['erle_db']:.1f} dB | {r['user_kept_db']:+.1f} dB "
                f"| {r['corr_onset']:.2f} / {r['corr_rest']:.2f} | {r['cpu_per_s'] * 100:.2f} % |"
            )
    lines += [
        "",
        "| candidate | version | memory added | processing lag |",
        "| --- | --- | --- | --- |",
    ]
    for name, result in results.items():
        if "error" in result:
            lines.append(f"| {CANDIDATES[name].label} | not run: {result['error']} | | |")
            continue
        lines.append(
            f"| {CANDIDATES[name].label} | {result['version']} "
            f"| {result['memory_mb']:.1f} MB | {result['lag_ms']:.0f} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--livekit-python", type=Path, default=LIVEKIT_PYTHON)
    parser.add_argument("--only", nargs="+", choices=CANDIDATES, default=list(CANDIDATES))
    parser.add_argument("--candidate", choices=CANDIDATES, help=argparse.SUPPRESS)
    parser.add_argument("--memory", choices=CANDIDATES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.candidate or args.memory:
        result = run_candidate(args.candidate) if args.candidate else run_memory(args.memory)
        print(json.dumps(result))
        return 0

    results: dict[str, dict] = {}
    for name in args.only:
        python = args.livekit_python if CANDIDATES[name].livekit else Path(sys.executable)
        try:
            results[name] = child(name, "--candidate", python) | child(name, "--memory", python)
        except (OSError, RuntimeError, json.JSONDecodeError) as error:
            results[name] = {"error": str(error)}
        results[name]["python"] = str(python)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
