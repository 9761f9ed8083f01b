"""`voice-assistant doctor`: what works and what does not, one verdict per check, one table.

The checks run in order, each bounded in time: the configuration, the audio devices, two
seconds of microphone level, a test tone, each configured button, each configured service
(reachable, key accepted, and for Dify the app's features against the settings). A check
whose prerequisite failed is "not run". The exit status is 0 only if no check failed.

The list is extensible: a check is anything with a `name`, what it `needs`, a time bound
and an async `run`, and `assistant.doctor_devices.doctor_checks` lists them in order. A
new part of the assistant (as the echo canceller and the event server did) adds
its check there, returning "not configured" when its settings leave it off.

This module is core (no device library): the checks that need devices live in the wiring
(`assistant.doctor_devices`), and reach the devices through the ports.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

import numpy as np

from assistant.config import missing_key_error, services_in_use
from assistant.providers.base import ServiceError
from assistant.providers.dify_app import MODE_NAMES, app_mode, check_app, form_fields
from assistant.settings import Settings

if TYPE_CHECKING:
    from assistant.providers.convai import ConvaiClient
    from assistant.providers.openai import OpenAIClient

SERVICE_TIMEOUT_S = 20.0
"""Bound on one service's check: a connect, a request or two."""
SILENT_PEAK_DBFS = -60.0
"""A microphone whose loudest sample in the check stays below this (while the user was
asked to speak) is muted, disconnected or the wrong device."""
CLIPPING_LEVEL = 32_000
"""A sample this close to full scale (-0.2 dBFS) is clipped."""
CLIPPING_FRACTION = 0.001
"""More clipped samples than this share of the capture is too loud (gain too high)."""


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "FAIL"
    SKIPPED = "skipped"
    """Left out on request (`--skip`, Enter at a button), or nothing to check."""
    NOT_RUN = "not run"
    """A check it needs failed first."""


@dataclass(frozen=True, slots=True)
class Result:
    check: str
    verdict: Verdict
    detail: str


@dataclass(slots=True)
class Examination:
    """What every check gets: the settings, what to skip, and a way to talk to the user."""

    settings: Settings
    skip: frozenset[str] = frozenset()
    interactive: bool = False
    """A person at a terminal: prompts may wait for Enter."""
    say: Callable[[str], None] = field(default=lambda text: print(text, flush=True))
    """Prompts and progress ("speak now"), as they happen."""


class Check(Protocol):
    name: str
    """Its row in the table, and what `--skip` and `needs` call it."""
    needs: tuple[str, ...]
    """Checks that must have passed for this one to mean anything."""
    timeout_s: float
    """Bound on `run`; beyond it the check fails."""

    async def run(self, exam: Examination) -> list[Result]:
        """One row or more (one per button, per service)."""
        ...


async def examine(
    checks: Sequence[Check], exam: Examination, before: Sequence[Result] = ()
) -> list[Result]:
    """Run `checks` in order, after `before` (the config's row); a failure never stops
    the checks that do not depend on it."""
    results: list[Result] = []
    failed = {r.check for r in before if r.verdict in (Verdict.FAIL, Verdict.NOT_RUN)}
    for check in checks:
        if check.name in exam.skip:
            results.append(Result(check.name, Verdict.SKIPPED, "--skip"))
            continue
        blocked = [need for need in check.needs if need in failed]
        if blocked:
            results.append(Result(check.name, Verdict.NOT_RUN, f"needs {', '.join(blocked)}"))
            failed.add(check.name)
            continue
        try:
            async with asyncio.timeout(check.timeout_s):
                rows = await check.run(exam)
        except TimeoutError:
            rows = [Result(check.name, Verdict.FAIL, f"no result within {check.timeout_s:g} s")]
        except Exception as exc:  # a check that breaks is a failed check, not a crash
            rows = [Result(check.name, Verdict.FAIL, f"{type(exc).__name__}: {exc}")]
        results += rows
        if any(row.verdict in (Verdict.FAIL, Verdict.NOT_RUN) for row in rows):
            failed.add(check.name)
    return results


def passed(results: Sequence[Result]) -> bool:
    """No check failed (skipped ones do not count against)."""
    return all(r.verdict in (Verdict.PASS, Verdict.SKIPPED) for r in results)


def table(results: Sequence[Result]) -> str:
    """The verdicts as an aligned text table."""
    rows = [
        ("check", "verdict", "detail"),
        *((r.check, r.verdict.value, r.detail) for r in results),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip() for row in rows
    )


def config_result(settings: Settings | None, error: Exception | None, source: str) -> Result:
    """The first row: whether the configuration loads, and whether `run` would start."""
    if error is not None or settings is None:
        return Result("config", Verdict.FAIL, str(error))
    if (missing := missing_key_error(settings)) is not None:
        return Result("config", Verdict.FAIL, str(missing))
    return Result("config", Verdict.PASS, f"{source}; Dify at {settings.dify.base_url}")


# -- the microphone's level ---------------------------------------------------------------


def dbfs(value: float) -> float:
    return 20 * math.log10(value / 32768) if value > 0 else -math.inf


def level_verdict(samples: np.ndarray, seconds: float) -> tuple[Verdict, str]:
    """silent / fine / clipping, from int16 samples captured while the user spoke."""
    if samples.size == 0:
        return Verdict.FAIL, f"silent: no audio at all in {seconds:g} s"
    wide = samples.astype(np.int32)
    peak = float(np.max(np.abs(wide)))
    rms = float(np.sqrt(np.mean(wide.astype(np.float64) ** 2)))
    clipped = float(np.mean(np.abs(wide) >= CLIPPING_LEVEL))
    levels = f"peak {dbfs(peak):.1f} dBFS, rms {dbfs(rms):.1f} dBFS over {seconds:g} s"
    if dbfs(peak) < SILENT_PEAK_DBFS:
        return Verdict.FAIL, f"silent: {levels}; muted, unplugged, or the wrong device?"
    if clipped > CLIPPING_FRACTION:
        return (
            Verdict.FAIL,
            f"clipping: {clipped:.1%} of samples at full scale ({levels}); lower its gain "
            "(alsamixer) or move it away",
        )
    return Verdict.PASS, f"fine: {levels}"


def tone(
    rate: int, seconds: float = 0.8, hz: float = 440.0, dbfs_level: float = -12.0
) -> np.ndarray:
    """A sine with 20 ms fades (no clicks), int16 at `rate`."""
    t = np.arange(int(rate * seconds)) / rate
    wave = np.sin(2 * np.pi * hz * t) * (32767 * 10 ** (dbfs_level / 20))
    fade = min(len(wave) // 2, int(rate * 0.02))
    ramp = np.linspace(0.0, 1.0, fade)
    wave[:fade] *= ramp
    wave[len(wave) - fade :] *= ramp[::-1]
    return wave.astype(np.int16)


# -- the services -----------------------------------------------------------------------


class ServicesCheck:
    """Each service the providers use: reachable, key accepted; Dify's app fits."""

    name = "services"
    needs = ("config",)
    timeout_s = SERVICE_TIMEOUT_S * 3

    async def run(self, exam: Examination) -> list[Result]:
        rows = []
        for service in services_in_use(exam.settings):
            exam.say(f"asking {service}...")
            try:
                async with asyncio.timeout(SERVICE_TIMEOUT_S):
                    rows.append(await _SERVICE_CHECKS[service](exam.settings))
            except TimeoutError:
                rows.append(
                    Result(service, Verdict.FAIL, f"no answer within {SERVICE_TIMEOUT_S:g} s")
                )
            except ServiceError as exc:
                rows.append(Result(service, Verdict.FAIL, _service_problem(exc)))
        return rows


def _service_problem(exc: ServiceError) -> str:
    if exc.status in (401, 403):
        return f"the key was refused ({exc.status} {exc.code}): {exc.message}"
    if exc.status is None:
        return f"not reachable ({exc.code}): {exc.message}"
    return f"answered {exc.status} {exc.code}: {exc.message}"


async def _check_dify(settings: Settings) -> Result:
    from assistant.providers.dify import DifyClient

    client = DifyClient(settings.dify, settings.http, settings.assistant.user)
    try:
        parameters = await client.parameters()
        info = await client.app_info()
    finally:
        await client.aclose()
    check = check_app(parameters, info, settings.dify, settings.providers)
    mode = app_mode(info)
    kind = MODE_NAMES.get(mode, mode) if mode else "app of unknown type (old Dify)"
    features = _features(parameters)
    if check.fatal:
        problems = "; ".join(f"{f.setting}: {f.message}" for f in check.fatal)
        return Result("dify", Verdict.FAIL, f"{kind}: {problems}")
    notes = "".join(f"; {f.setting}: {f.message}" for f in check.findings)
    return Result("dify", Verdict.PASS, f"key accepted; {kind}; {features}{notes}")


def _features(parameters: dict[str, object]) -> str:
    def on(name: str) -> str:
        feature = parameters.get(name)
        enabled = isinstance(feature, dict) and feature.get("enabled")
        return "on" if enabled else "off"

    fields = form_fields(parameters)
    form = ", ".join(f.variable + ("*" if f.required else "") for f in fields) or "none"
    return f"speech to text {on('speech_to_text')}, text to speech {on('text_to_speech')}, " + (
        f"input form: {form}"
    )


async def _check_openai(settings: Settings) -> Result:
    from assistant.providers.openai import OpenAIClient

    return await _check_key("openai", OpenAIClient(settings.openai, settings.http))


async def _check_convai(settings: Settings) -> Result:
    from assistant.providers.convai import ConvaiClient

    return await _check_key("convai", ConvaiClient(settings.convai, settings.http))


async def _check_key(service: str, client: OpenAIClient | ConvaiClient) -> Result:
    """The client's warm-up request (a cheap authenticated read) answers: the key works."""
    try:
        await client.warm()
    finally:
        await client.aclose()
    return Result(service, Verdict.PASS, f"key accepted at {client.settings.base_url}")


_SERVICE_CHECKS = {"dify": _check_dify, "openai": _check_openai, "convai": _check_convai}


def is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()
