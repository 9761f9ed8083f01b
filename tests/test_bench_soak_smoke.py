"""The soak benchmark runs end to end on a few turns (the real run is in bench/RESULTS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_soak_runs_a_few_faulted_turns(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--turns=3", "--fault-rate=0.5", f"--json={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "soak: passed" in done.stdout
    report = json.loads(out.read_text())
    assert report["turns"] == 3
    assert report["faulted_requests"] >= 1, "seed 1 faults some of the first turns' requests"
    assert sum(report["outcomes"].values()) == 3
    assert set(report["outcomes"]) <= {"answered", "recovered", "failed"}
    assert report["turns_over_bound"] == []
    for turn in report["results"]:
        assert turn["trace"][-1] == "state:listening", turn
