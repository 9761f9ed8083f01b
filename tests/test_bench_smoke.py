"""The latency benchmark runs end to end on a tiny input (the real run is in bench/RESULTS.md).

One counted turn per system, no warm-up, near-zero service latencies, one pause-set question:
this checks that the script, its clients and its table work, not what the figures are.
pipecat (system c) runs only if `bench/.pipecat-venv` is already there; otherwise the script
must say why instead of crashing. Nothing is installed here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIPECAT_PYTHON = ROOT / "bench" / ".pipecat-venv" / "bin" / "python"
COLUMNS = (
    "system",
    "turns",
    "failed",
    "first_audio_p50_ms",
    "first_audio_p95_ms",
    "overhead_p50_ms",
    "overhead_p95_ms",
    "hangover_ms",
    "service_ms",
    "pause_turns",
    "pause_wrong",
)
"""The table's header (bench.latency_report.COLUMNS; bench/ is not an installed package)."""
SYSTEMS = ("a", "s", "sc", "b", "c")
PAUSE_SYSTEMS = ("a", "s", "sc", "c")
"""Who answers the pause set (not b)."""
NUMBER = re.compile(r"-?\d+(\.\d+)?$")


def _run_bench(tmp_path: Path) -> tuple[str, dict]:
    out = tmp_path / "latency.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.latency",
            "--turns=1",
            "--warmup=0",
            "--tiny",
            "--only=a,s,sc,b,c",
            "--pause-reps=1",
            "--pauses=450",
            "--no-pipecat-install",
            f"--json={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text())


def _rows(stdout: str) -> dict[str, list[str]]:
    """The table's rows by system key, after checking its header."""
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("system "))
    assert lines[header].split() == list(COLUMNS)
    rows: dict[str, list[str]] = {}
    for line in lines[header + 1 :]:
        if not line.strip():
            break
        if re.match(r"(a|s|sc|b|c) \S+  ", line):
            key, label, *cells = line.split()
            rows[key] = [f"{key} {label}", *cells]
    return rows


def test_latency_bench_runs_on_a_tiny_input(tmp_path: Path) -> None:
    stdout, report = _run_bench(tmp_path)
    rows = _rows(stdout)
    pipecat_ready = PIPECAT_PYTHON.exists()
    expected = [key for key in SYSTEMS if key != "c" or pipecat_ready]
    assert sorted(rows) == sorted(expected), stdout
    for key in expected:
        row = rows[key]
        assert len(row) == len(COLUMNS), row
        assert row[1:3] == ["1", "0"], f"{key}: one counted turn, none failed: {stdout}"
        assert all(NUMBER.match(cell) for cell in row[3:-2]), row
        if key in PAUSE_SYSTEMS:
            # One pause question, answered whole.
            assert row[-2:] == ["1", "0"], f"{key}: {stdout}"
        else:
            assert row[-2:] == ["n/a", "n/a"], row
    assert "ratio a/b: first_audio p50 " in stdout
    assert "target 0 wrong-question answers on the pause set (a, s, sc): met" in stdout
    for key in ("s", "sc"):
        # The speculative systems used their speculation.
        assert report["systems"][key]["speculations"].get("used") == 1, stdout
    if pipecat_ready:
        for key in ("a", "s", "sc"):
            assert f"ratio {key}/c: first_audio p50 " in stdout
        assert report["systems"]["c"]["unavailable"] is None
    else:
        assert re.search(r"^c pipecat: pipecat not installed: \S", stdout, re.MULTILINE)
        assert report["systems"]["c"]["unavailable"]
    # The JSON holds every turn with the same definitions as the table.
    turn = report["systems"]["a"]["turns"][0]
    assert turn["overhead_ms"] == round(
        turn["first_audio_ms"] - turn["hangover_ms"] - turn["service_ms"], 1
    )
    # Its steps split the own overhead without losing any of it (up to rounding).
    assert abs(sum(turn["extra"]["steps"].values()) - turn["overhead_ms"]) < 0.5
