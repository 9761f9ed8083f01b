"""What one `bench.latency` run found, as a table with ratios and targets, and as JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bench.common import LatencyProfile, Question, TurnResult, percentile
from bench.latency_systems import SYSTEMS
from bench.pause_set import PauseTally
from bench.pipecat_env import PipecatConfig

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
"""The table's header, in order; the smoke test checks it. `pause_wrong`: wrong-question
answers on the pause set (n/a where the system was not run on it)."""
OVERHEAD_TARGET_MS = 20.0
SEQUENTIAL_TARGET = 3.0
SPECULATION_TARGET = 0.25
"""s and sc: first audio at least this much sooner than c (p50)."""
RATIOS = (("a", "b"), ("a", "c"), ("s", "c"), ("sc", "c"))


@dataclass(slots=True)
class SystemRun:
    """One system's turns, or why it could not run."""

    key: str
    results: list[TurnResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    unavailable: str | None = None
    pause: PauseTally | None = None
    """Its answers on the pause set, if it was run on it."""

    @property
    def label(self) -> str:
        return f"{self.key} {SYSTEMS[self.key]}"

    def stats(self) -> dict[str, float]:
        first = [r.first_audio_ms for r in self.results]
        overhead = [r.overhead_ms for r in self.results]
        return {
            "first_audio_p50_ms": percentile(first, 50),
            "first_audio_p95_ms": percentile(first, 95),
            "overhead_p50_ms": percentile(overhead, 50),
            "overhead_p95_ms": percentile(overhead, 95),
            "hangover_ms": self.results[0].hangover_ms if self.results else float("nan"),
            "service_ms": percentile([r.service_ms for r in self.results], 50),
            "pause_turns": float(self.pause.turns) if self.pause else float("nan"),
            "pause_wrong": float(len(self.pause.wrong)) if self.pause else float("nan"),
        }

    def step_stats(self) -> dict[str, tuple[float, float]]:
        """p50 and p95 of each step's share of the own overhead, in step order."""
        names: dict[str, None] = {}
        for result in self.results:
            names.update(dict.fromkeys(result.extra.get("steps", {})))
        out = {}
        for name in names:
            values = [r.extra["steps"][name] for r in self.results if name in r.extra["steps"]]
            out[name] = (percentile(values, 50), percentile(values, 95))
        return out

    def speculations(self) -> dict[str, int]:
        """How the counted turns' speculations ended (s, sc only)."""
        out: dict[str, int] = {}
        for result in self.results:
            for outcome in result.extra.get("speculations", []):
                out[outcome] = out.get(outcome, 0) + 1
        return out


@dataclass(slots=True)
class Report:
    """Everything one run measured, and how."""

    command: str
    date: str
    machine: dict[str, Any]
    profile: LatencyProfile
    pipecat: PipecatConfig
    question: Question
    warmup: int
    runs: dict[str, SystemRun]
    pauses_ms: tuple[int, ...] = ()
    """The pause set's pause lengths (empty: not run)."""
    pipecat_status: str = ""

    def ratio(self, key: str, other: str, stat: str) -> float | None:
        mine, theirs = self.runs.get(key), self.runs.get(other)
        if mine is None or theirs is None or not mine.results or not theirs.results:
            return None
        return mine.stats()[stat] / theirs.stats()[stat]

    def as_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "date": self.date,
            "machine": self.machine,
            "profile": dataclasses.asdict(self.profile),
            "pipecat_config": dataclasses.asdict(self.pipecat),
            "pipecat_status": self.pipecat_status,
            "question": {
                "speech_end_ms": round(self.question.speech_end_s * 1000, 1),
                "duration_s": round(self.question.duration_s, 3),
            },
            "warmup_turns": self.warmup,
            "pauses_ms": list(self.pauses_ms),
            "systems": {
                key: {
                    "label": run.label,
                    "unavailable": run.unavailable,
                    "stats": {k: _round(v) for k, v in run.stats().items()},
                    "overhead_by_step_p50_p95_ms": {
                        name: [_round(p50), _round(p95)]
                        for name, (p50, p95) in run.step_stats().items()
                    },
                    "speculations": run.speculations(),
                    "pause_set": run.pause.as_json() if run.pause else None,
                    "failures": run.failures,
                    "turns": [r.as_json() for r in run.results],
                }
                for key, run in self.runs.items()
            },
            "ratios": {
                f"{key}/{other}": {
                    stat: _round(self.ratio(key, other, f"first_audio_{stat}_ms"), 3)
                    for stat in ("p50", "p95")
                }
                for key, other in RATIOS
                if key in self.runs and other in self.runs
            },
        }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None or value != value else round(value, digits)


def _cell(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render(report: Report) -> str:
    """The table, the ratios and the targets, as printed."""
    profile = report.profile
    pipecat = report.pipecat
    lines = [
        f"latency: {report.date}, {report.machine['cpus']} CPUs, {report.machine['platform']}",
        f"services: {profile.describe()}",
        f"question: {report.question.duration_s:.2f} s WAV, speech ends at "
        f"{report.question.speech_end_s * 1000:.0f} ms; {report.warmup} warm-up turn(s) "
        "per system not counted",
        f"pipecat: Silero stop_secs {pipecat.stop_secs:g} (start_secs {pipecat.start_secs:g}), "
        f"speech timeout {pipecat.speech_timeout:g} s",
    ]
    if report.pauses_ms:
        lines.append(
            "pause set: the question with "
            + ", ".join(f"{p}" for p in report.pauses_ms)
            + " ms between its halves"
        )
    lines.append("")
    rows = [list(COLUMNS)]
    for run in report.runs.values():
        if run.unavailable is not None:
            continue
        stats = run.stats()
        rows.append(
            [run.label, str(len(run.results)), str(len(run.failures))]
            + [_cell(stats[name]) for name in COLUMNS[3:-2]]
            + [_cell(stats[name], 0) for name in COLUMNS[-2:]]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    for run in report.runs.values():
        if run.unavailable is not None:
            lines.append(f"{run.label}: {run.unavailable}")
        for failure in run.failures:
            lines.append(f"{run.label} failed {failure}")
        if run.pause is not None:
            for wrong in run.pause.wrong:
                lines.append(f"{run.label} wrong question: {wrong}")
            for failure in run.pause.failed:
                lines.append(f"{run.label} pause turn failed: {failure}")
    lines.append("")
    lines.append("own overhead by step, p50/p95 ms (step time minus its configured time):")
    for run in report.runs.values():
        steps = run.step_stats()
        if steps:
            parts = [f"{name} {_cell(p50)}/{_cell(p95)}" for name, (p50, p95) in steps.items()]
            lines.append(f"  {run.label}: " + ", ".join(parts))
    speculating = [run for run in report.runs.values() if run.speculations()]
    if speculating:
        lines.append("speculations (counted turns; pause set):")
        for run in speculating:
            counts = ", ".join(f"{n} {outcome}" for outcome, n in run.speculations().items())
            if run.pause is not None:
                counts += "; " + ", ".join(
                    f"{n} {outcome}" for outcome, n in run.pause.speculations.items()
                )
            lines.append(f"  {run.label}: {counts}")
    lines.append("")
    for key, other in RATIOS:
        if key not in report.runs or other not in report.runs:
            continue
        p50, p95 = (report.ratio(key, other, f"first_audio_{s}_ms") for s in ("p50", "p95"))
        sooner = ""
        if p50:
            sooner = (
                f" ({key} {1 / p50:.2f}x sooner, {(1 - p50) * 100:.1f}% less, at p50)"
                if p50 < 1
                else f" ({key} later at p50)"
            )
        lines.append(
            f"ratio {key}/{other}: first_audio p50 {_ratio(p50)}, p95 {_ratio(p95)}{sooner}"
        )
    lines.extend(_targets(report))
    return "\n".join(lines)


def _targets(report: Report) -> list[str]:
    out = []
    a = report.runs.get("a")
    if a is not None and a.results:
        p95 = a.stats()["overhead_p95_ms"]
        verdict = "met" if p95 <= OVERHEAD_TARGET_MS else "MISSED"
        out.append(f"target a own overhead p95 <= {OVERHEAD_TARGET_MS:.0f} ms: {verdict}")
    ratio_b = report.ratio("a", "b", "first_audio_p50_ms")
    if ratio_b is not None:
        verdict = "met" if 1 / ratio_b >= SEQUENTIAL_TARGET else "MISSED"
        out.append(f"target a >= {SEQUENTIAL_TARGET:.0f}x sooner than b (p50): {verdict}")
    ratio_c = report.ratio("a", "c", "first_audio_p50_ms")
    if ratio_c is not None:
        out.append(f"target a sooner than c (p50): {'met' if ratio_c < 1 else 'MISSED'}")
    for key in ("s", "sc"):
        ratio = report.ratio(key, "c", "first_audio_p50_ms")
        if ratio is not None:
            verdict = "met" if 1 - ratio >= SPECULATION_TARGET else "MISSED"
            out.append(
                f"target {key} >= {SPECULATION_TARGET:.0%} sooner than c (p50): {verdict} "
                f"({1 - ratio:.1%})"
            )
    tallied = [run for key, run in report.runs.items() if key in ("a", "s", "sc") and run.pause]
    if tallied:
        wrong = sum(len(run.pause.wrong) for run in tallied if run.pause)
        failed = sum(len(run.pause.failed) for run in tallied if run.pause)
        turns = sum(run.pause.turns for run in tallied if run.pause)
        verdict = "met" if wrong == 0 and failed == 0 else "MISSED"
        out.append(
            f"target 0 wrong-question answers on the pause set (a, s, sc): {verdict} "
            f"({wrong} wrong, {failed} unanswered of {turns})"
        )
    return out
