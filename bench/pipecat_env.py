"""pipecat's own virtual environment, and the pipecat client (system c) running in it.

pipecat pins its own versions of packages we also use (numpy, aiohttp, websockets ...), so it
lives in `bench/.pipecat-venv` with `pip install "pipecat-ai[openai]"`, never in `.venv`.
`bench/pipecat_client.py` runs there as a subprocess that answers one turn per request, while
the dev server it talks to runs in its own process.

    .venv/bin/python -m bench.pipecat_env            # create (or check) the environment
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
VENV = BENCH_DIR / ".pipecat-venv"
PYTHON = VENV / "bin" / "python"
CLIENT = BENCH_DIR / "pipecat_client.py"
REQUIREMENT = "pipecat-ai[openai]"
INSTALL_TIMEOUT_S = 900.0
READY_TIMEOUT_S = 180.0
"""Importing pipecat (onnxruntime, numba, the OpenAI SDK) takes seconds on a slow board."""
TURN_TIMEOUT_S = 90.0
_TAIL_LINES = 8


class PipecatUnavailable(Exception):
    """pipecat cannot be installed or run here; the message says exactly why."""


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "(no output)"


async def _run(*command: str | Path, timeout: float) -> tuple[int, str]:
    """Run a command; its exit status and combined output."""
    process = await asyncio.create_subprocess_exec(
        *map(str, command), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        return -1, f"timed out after {timeout:.0f} s"
    return process.returncode or 0, output.decode(errors="replace")


async def _imports() -> tuple[bool, str]:
    """Whether pipecat and the parts the client uses import in the environment."""
    status, output = await _run(
        PYTHON,
        "-c",
        "import pipecat, pipecat.services.openai.llm, pipecat.audio.vad.silero;"
        "print(getattr(pipecat, '__version__', 'unknown'))",
        timeout=READY_TIMEOUT_S,
    )
    return status == 0, output


async def ensure_environment(install: bool = True) -> Path:
    """The pipecat environment's python, creating it first if it is missing and allowed.

    An environment that is there and imports pipecat is used as it is (no network). Raises
    PipecatUnavailable with the reason: missing (and not allowed to install), venv creation or
    pip failed (with the tail of pip's output), or pipecat does not import.
    """
    if PYTHON.exists():
        ok, output = await _imports()
        if ok:
            return PYTHON
        if not install:
            raise PipecatUnavailable(f"pipecat does not import: {_tail(output)}")
    elif not install:
        raise PipecatUnavailable(
            f"no virtual environment at {VENV.relative_to(BENCH_DIR.parent)} "
            "(create it with `.venv/bin/python -m bench.pipecat_env`)"
        )
    else:
        # The interpreter that runs the benchmark; `-m venv` uses its base installation.
        status, output = await _run(sys.executable, "-m", "venv", VENV, timeout=120)
        if status != 0:
            raise PipecatUnavailable(f"python -m venv failed: {_tail(output)}")
    status, output = await _run(
        PYTHON, "-m", "pip", "install", "--quiet", REQUIREMENT, timeout=INSTALL_TIMEOUT_S
    )
    if status != 0:
        raise PipecatUnavailable(f"pip install {REQUIREMENT!r} failed: {_tail(output)}")
    ok, output = await _imports()
    if not ok:
        raise PipecatUnavailable(f"pipecat does not import: {_tail(output)}")
    return PYTHON


@dataclass(frozen=True, slots=True)
class PipecatConfig:
    """How the pipecat client is set up: its VAD and turn stop, comparable to our endpointer."""

    stop_secs: float = 0.5
    """Silero VAD `stop_secs`: silence before it reports the end of speech (our hangover)."""
    start_secs: float = 0.2
    """Silero VAD `start_secs` (pipecat's default): speech before it reports a start, so
    also how soon speech resuming after a pause cancels the turn stop."""
    speech_timeout: float = 0.0
    """SpeechTimeoutUserTurnStopStrategy's `user_speech_timeout` after that."""
    block_ms: int = 20


class PipecatClient:
    """The pipecat client subprocess, answering one turn per `turn()` call."""

    def __init__(self, process: asyncio.subprocess.Process, ready: dict[str, Any], log: Path):
        self._process = process
        self.ready = ready
        """The client's greeting: pipecat's version, its VAD stop and speech timeout."""
        self._log = log

    @property
    def version(self) -> str:
        return str(self.ready.get("pipecat", "unknown"))

    @property
    def vad_stop_ms(self) -> float:
        """Silero's `stop_secs` as it applies it (whole 32 ms frames)."""
        return float(self.ready["vad_stop_ms"])

    @property
    def speech_timeout_ms(self) -> float:
        return float(self.ready["speech_timeout_ms"])

    @property
    def hangover_ms(self) -> float:
        """All the silence after speech that this pipeline's turn logic waits for."""
        return self.vad_stop_ms + self.speech_timeout_ms

    def log_tail(self) -> str:
        try:
            return _tail(self._log.read_text(errors="replace"))
        except OSError:
            return "(no log)"

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self._process.stdout is not None
        async with asyncio.timeout(timeout):
            line = await self._process.stdout.readline()
        if not line:
            raise PipecatUnavailable(f"the pipecat client exited: {self.log_tail()}")
        return json.loads(line)

    async def turn(self, number: int, wav: Path | None = None) -> dict[str, Any]:
        """Run one question (the client's own WAV, or `wav`) through pipecat; its JSON
        report (see pipecat_client.py)."""
        assert self._process.stdin is not None
        command = f"turn {number} {wav}" if wav is not None else f"turn {number}"
        self._process.stdin.write(f"{command}\n".encode())
        await self._process.stdin.drain()
        try:
            return await self._read(TURN_TIMEOUT_S)
        except TimeoutError:
            raise PipecatUnavailable(
                f"no answer from the pipecat client in {TURN_TIMEOUT_S:.0f} s: {self.log_tail()}"
            ) from None

    async def close(self) -> None:
        process = self._process
        if process.returncode is None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.write(b"quit\n")
                await process.stdin.drain()
                process.stdin.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def pipecat_client(
    python: Path, base_url: str, wav: Path, config: PipecatConfig, log: Path
) -> AsyncIterator[PipecatClient]:
    """Start the pipecat client in its environment; raises PipecatUnavailable if it won't."""
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            str(python),
            str(CLIENT),
            f"--base-url={base_url}",
            f"--wav={wav}",
            f"--block-ms={config.block_ms}",
            f"--stop-secs={config.stop_secs}",
            f"--start-secs={config.start_secs}",
            f"--speech-timeout={config.speech_timeout}",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    client = PipecatClient(process, {}, log)
    try:
        try:
            client.ready = await client._read(READY_TIMEOUT_S)
        except (TimeoutError, ValueError) as exc:
            raise PipecatUnavailable(
                f"the pipecat client did not start ({exc!r}): {client.log_tail()}"
            ) from None
        if not client.ready.get("ready"):
            raise PipecatUnavailable(f"the pipecat client did not start: {client.ready}")
        yield client
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="create or check bench/.pipecat-venv")
    parser.add_argument(
        "--check", action="store_true", help="only check it, never create or install"
    )
    args = parser.parse_args(argv)
    try:
        python = asyncio.run(ensure_environment(install=not args.check))
    except PipecatUnavailable as exc:
        print(f"pipecat not installed: {exc}", file=sys.stderr)
        return 1
    print(f"pipecat environment ready: {python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
