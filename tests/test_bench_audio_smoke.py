"""bench.wake_word and bench.aec run end to end on small inputs and print their tables
(bench.echo_path's scenario is tests/test_echo_path_pulse.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import aec, wake_word


def test_wake_word_bench_reports_every_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "wake.json"
    assert wake_word.main(["--hours", "0.005", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["detection"]["renderings"] == 135
    assert report["detection"]["detected"] >= 100
    assert report["listening"]["false_accepts"] == 0
    assert 0 < report["listening"]["detector_cpu_per_s"] < 0.05
    assert "false accepts" in capsys.readouterr().out


def test_aec_bench_reports_every_room(tmp_path: Path) -> None:
    out = tmp_path / "aec.json"
    assert aec.main(["--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert len(report["rooms"]) == 6
    assert all(room["erle_db"] >= 25 for room in report["rooms"])
    assert report["lag_ms"] < 20
