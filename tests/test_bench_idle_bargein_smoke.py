"""Smoke test of bench/idle.py and bench/barge_in.py: each runs on a tiny input.

The benchmarks themselves are not part of the test run (they take minutes and
their figures depend on the machine); this only checks that the scripts still
work end to end and print their tables, so a change elsewhere cannot silently
break them. File devices only: the PulseAudio paths are the same code with other
devices, and the audio suites already cover those devices.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from clean_env import clean_environment

REPO = Path(__file__).resolve().parent.parent


def run_bench(*args: str, timeout: float) -> str:
    """Run `python -m bench.<...>` from the repository root; its stdout."""
    # A caller's overrides, Dify key or sound server must not reach the assistant under test.
    env = clean_environment("PULSE_")
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def row(table: str, *cells: str) -> str:
    """The table row whose first cells are `cells`."""
    prefix = "| " + " | ".join(cells) + " |"
    rows = [line for line in table.splitlines() if line.startswith(prefix)]
    assert rows, f"no row {prefix!r} in:\n{table}"
    return rows[0]


def numbers(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_idle_bench_runs_on_two_seconds_and_one_turn() -> None:
    out = run_bench(
        "bench.idle", "--seconds", "2", "--turns", "1", "--device", "file", "-q", timeout=90
    )
    for audio in ("silence", "noise"):
        cells = numbers(row(out, "file", audio))
        seconds, cpu_s = float(cells[2]), float(cells[3])
        assert 1.5 < seconds < 3.0
        assert cpu_s >= 0.0
    memory = out[out.index("Start-up and memory") :]
    cells = numbers(row(memory, "file"))
    # spawn→ready: the median first, then each run's.
    assert 0.0 < float(cells[1].split()[0]) < 30.0
    assert cells[4].startswith("1: "), "VmRSS after the one turn"
    assert float(cells[4].split(": ")[1]) > 10.0


def test_barge_in_bench_runs_one_press_on_files() -> None:
    out = run_bench("bench.barge_in", "--presses", "1", "--device", "file", "-q", timeout=90)
    cells = numbers(row(out, "file", "1"))
    p50 = float(cells[4])
    # The WAV speaker is silent within a period (20 ms) plus scheduling.
    assert 0.0 <= p50 < 500.0
