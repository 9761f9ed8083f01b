"""A tiny speech recogniser that only knows the utterances it was told about.

Each known phrase is spoken once with espeak-ng and reduced to a fingerprint:
the log energy of a few frequency bands every 10 ms over its voiced part. An
upload gets the same treatment and is compared with every phrase by
normalised cross-correlation over small time shifts. That is enough to
recognise espeak speech that went through a resampler, a sound server, a
little gain change and some noise, and it is deterministic, which a real
recogniser is not.

An upload whose voiced part matches only the start of a phrase (the speaker
was cut off) is transcribed as the matching share of the phrase's words, so a
truncated recording is visibly a different, shorter transcript.

An upload that matches no phrase whole but holds pauses of at least PAUSE_MS
is recognised part by part, as a real recogniser hears a speaker who paused
mid-sentence: when every part is a whole known phrase, the transcript is the
parts' texts joined. So "What is the weather like", a pause, "on Mars?" (both
halves registered) reads as the whole question, and its first half alone as
the half.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np
import soxr

from assistant.devserver.synth import speech_for_async

DEFAULT_PHRASES: tuple[str, ...] = (
    "What is the weather like on Mars?",
    "What time is it?",
    "Tell me a joke.",
    "Turn on the kitchen lights.",
    "How far away is the Moon?",
)

FP_RATE = 16_000
"""Everything is compared at this rate; uploads and phrases are resampled to it."""
_HOP = FP_RATE // 100  # 10 ms frames
_WINDOW = 400  # 25 ms analysis window
_BAND_EDGES_HZ = (100, 400, 800, 1500, 2500, 4000, 7800)
_VOICED_BELOW_PEAK_DB = 35.0
"""A frame is voiced if it is within this much of the loudest frame ..."""
_VOICED_FLOOR_DB = -60.0
"""... and louder than this (dBFS), so digital silence and hiss never count ..."""
_VOICED_ABOVE_NOISE_DB = 12.0
"""... and this far above the noise floor (the quietest frames), so a noisy room's
background does not stretch the voiced part out to the whole recording."""
_BAND_RANGE_DB = 40.0
"""Band energies are floored this far below each band's peak: gain-invariant, and
pauses look the same whether they are silent or a little noisy."""
_MAX_SHIFT = 12  # frames (±120 ms) of misalignment searched
_MATCH_SCORE = 0.75
_FULL_RATIO = 0.9
"""An upload at least this long relative to a phrase is the whole phrase ..."""
_MAX_RATIO = 1.15
"""... and one longer than this is something else."""
_MIN_PREFIX_FRAMES = 40
"""Cut-off matches need this much voiced audio (400 ms) to mean anything."""
_FFT_BLOCK_FRAMES = 2000
_LOST_ONSET_FRAMES = 15
"""An upload short of a phrase by at most this much (150 ms) may have lost its soft
first sound (to noise, or to an echo canceller ducking the first moment of a user
talking over the device): it is the whole phrase if it matches the phrase's rest."""
_DAMAGED_ONSET_FRAMES = 25
"""A question asked over the device's own voice may have its first 250 ms damaged
(what is left of the echo, the canceller ducking double talk): a whole-length upload
whose rest matches the phrase's rest is that phrase. A real recogniser copes with this
by language; a fingerprint has to be told."""
_ONSET_MARGIN = 0.05
"""An upload shorter than a phrase reads as the whole phrase with its onset lost or damaged
(rather than as the phrase cut off at the end) when that comparison beats the cut-off
reading by this much: leaving the first frames out flatters any comparison a little, so
a true cut-off still reads as one."""
_PREFIX_PENALTY = 0.03
"""A whole-phrase match beats an equally good match with the start of a longer phrase."""
PAUSE_MS = 150
"""Unvoiced stretches at least this long split an upload that matches nothing whole."""
_PAUSE_FRAMES = PAUSE_MS * FP_RATE // 1000 // _HOP


@dataclass(frozen=True, slots=True)
class Fingerprint:
    bands: np.ndarray
    """(frames, bands) float32 log energy every 10 ms, floored per band."""
    level: np.ndarray
    """Level of each of those frames in dB relative to the loudest frame."""
    threshold: float
    """Relative level above which a frame of this recording counts as voiced."""

    @property
    def frames(self) -> int:
        return int(self.bands.shape[0])

    @property
    def voiced_s(self) -> float:
        return self.frames * _HOP / FP_RATE

    def trimmed(self, threshold: float) -> np.ndarray:
        """The bands from the first to the last frame louder than `threshold`."""
        voiced = np.flatnonzero(self.level > threshold)
        if len(voiced) == 0:
            return self.bands[:0]
        return self.bands[int(voiced[0]) : int(voiced[-1]) + 1]


@dataclass(frozen=True, slots=True)
class Recognition:
    text: str
    """The transcript."""
    phrase: str | None
    """The known phrase it matched (even partly), or None."""
    score: float
    """Best normalised cross-correlation found (0 when nothing was compared)."""
    fraction: float
    """Share of the phrase that was heard: 1.0 for a whole phrase."""
    voiced_s: float
    """Length of the voiced part of the upload."""


def fingerprint(samples: np.ndarray, sample_rate: int, *, trim: bool = True) -> Fingerprint:
    """Fingerprint mono float samples (blocking, a few ms per second of audio).

    With `trim` (uploads) only the voiced part is kept. Phrases keep every frame
    so that they can be trimmed at the level the upload was trimmed at: a quiet
    final consonant lost in a noisy upload is then ignored on both sides.
    """
    audio = np.asarray(samples, dtype=np.float32)
    if sample_rate != FP_RATE and len(audio):
        audio = soxr.resample(audio, sample_rate, FP_RATE).astype(np.float32)
    frames = len(audio) // _HOP
    if frames < 3:
        return _EMPTY
    rms = np.sqrt(np.mean(audio[: frames * _HOP].reshape(frames, _HOP) ** 2, axis=1))
    absolute = 20 * np.log10(rms + 1e-9)
    peak = float(absolute.max())
    threshold = max(
        peak - _VOICED_BELOW_PEAK_DB,
        float(np.percentile(absolute, 5)) + _VOICED_ABOVE_NOISE_DB,
        _VOICED_FLOOR_DB,
    )
    voiced = np.flatnonzero(absolute > threshold)
    if len(voiced) == 0:
        return _EMPTY
    first, last = (int(voiced[0]), int(voiced[-1]) + 1) if trim else (0, frames)
    return Fingerprint(
        _band_energies(audio, first, last),
        (absolute[first:last] - peak).astype(np.float32),
        threshold - peak,
    )


def _band_energies(audio: np.ndarray, first: int, last: int) -> np.ndarray:
    # Each 10 ms frame is analysed with a 25 ms window centred on it.
    pad = (_WINDOW - _HOP) // 2
    padded = np.pad(audio, (pad, _WINDOW))
    window = np.hanning(_WINDOW)
    freqs = np.fft.rfftfreq(_WINDOW, 1 / FP_RATE)
    masks = [(freqs >= lo) & (freqs < hi) for lo, hi in itertools.pairwise(_BAND_EDGES_HZ)]
    blocks = []
    # In blocks, so that a 30 MB upload does not need gigabytes of windows at once.
    for block_first in range(first, last, _FFT_BLOCK_FRAMES):
        starts = np.arange(block_first, min(last, block_first + _FFT_BLOCK_FRAMES)) * _HOP
        windows = padded[starts[:, None] + np.arange(_WINDOW)[None, :]] * window
        power = np.abs(np.fft.rfft(windows, axis=1)) ** 2
        blocks.append(np.stack([power[:, mask].sum(axis=1) for mask in masks], axis=1))
    db = 10 * np.log10(np.concatenate(blocks) + 1e-12)
    return np.maximum(db, db.max(axis=0) - _BAND_RANGE_DB).astype(np.float32)


_EMPTY = Fingerprint(
    np.zeros((0, len(_BAND_EDGES_HZ) - 1), dtype=np.float32), np.zeros(0, np.float32), 0.0
)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    # Centring each band separately ignores a gentle EQ on the way (speaker, mic).
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denominator = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b)) / denominator if denominator > 0 else 0.0


def best_alignment(upload: np.ndarray, phrase: np.ndarray) -> float:
    """Best correlation of the upload's bands with the phrase's start, over small shifts."""
    n, m = len(upload), len(phrase)
    best = 0.0
    for shift in range(-_MAX_SHIFT, _MAX_SHIFT + 1):
        # Upload frame i lines up with phrase frame i + shift.
        start = max(0, -shift)
        stop = min(n, m - shift)
        if stop - start < 0.8 * min(n, m):
            continue
        score = _correlation(upload[start:stop], phrase[start + shift : stop + shift])
        best = max(best, score)
    return best


def match(upload: Fingerprint, phrases: Mapping[str, Fingerprint]) -> Recognition:
    """Transcribe a fingerprinted upload against the known phrases."""
    whole = _match_one(upload, phrases)
    if whole.fraction >= 1.0:
        return whole
    parts = [_match_one(part, phrases) for part in _parts(upload)]
    if len(parts) < 2 or any(part.fraction < 1.0 for part in parts):
        return whole
    return Recognition(
        " ".join(part.text for part in parts),
        " | ".join(part.phrase or "" for part in parts),
        min(part.score for part in parts),
        1.0,
        upload.voiced_s,
    )


def _parts(upload: Fingerprint) -> list[Fingerprint]:
    """The upload cut at its pauses (unvoiced runs of at least _PAUSE_FRAMES)."""
    voiced = upload.level > upload.threshold
    parts: list[Fingerprint] = []
    start: int | None = None
    quiet = 0
    for index, loud in enumerate(voiced):
        if loud:
            if start is None:
                start = index
            quiet = 0
            continue
        quiet += 1
        if start is not None and quiet == _PAUSE_FRAMES:
            end = index - quiet + 1
            parts.append(_slice(upload, start, end))
            start = None
    if start is not None:
        end = int(np.flatnonzero(voiced)[-1]) + 1
        parts.append(_slice(upload, start, end))
    return parts


def _slice(upload: Fingerprint, start: int, end: int) -> Fingerprint:
    return Fingerprint(upload.bands[start:end], upload.level[start:end], upload.threshold)


def _match_one(upload: Fingerprint, phrases: Mapping[str, Fingerprint]) -> Recognition:
    if upload.frames == 0:
        return Recognition("", None, 0.0, 0.0, 0.0)
    best: tuple[float, str, float, float] | None = None  # (rank, phrase, score, fraction)
    for text, phrase in phrases.items():
        reference = phrase.trimmed(max(upload.threshold, phrase.threshold))
        if len(reference) == 0:
            continue
        ratio = upload.frames / len(reference)
        if ratio > _MAX_RATIO or (ratio < _FULL_RATIO and upload.frames < _MIN_PREFIX_FRAMES):
            continue
        score = best_alignment(upload.bands, reference)
        fraction = 1.0 if ratio >= _FULL_RATIO else ratio
        if score < _MATCH_SCORE or fraction < 1.0:
            rest = _onset_spared(upload, reference)
            if rest >= _MATCH_SCORE and (score < _MATCH_SCORE or rest >= score + _ONSET_MARGIN):
                score, fraction = rest, 1.0
        if score < _MATCH_SCORE:
            continue
        rank = score - (_PREFIX_PENALTY if fraction < 1.0 else 0.0)
        if best is None or rank > best[0]:
            best = (rank, text, score, fraction)
    if best is None:
        return Recognition(
            f"I heard {upload.voiced_s:.1f} seconds of speech.", None, 0.0, 0.0, upload.voiced_s
        )
    _rank, text, score, fraction = best
    return Recognition(_prefix(text, fraction), text, score, fraction, upload.voiced_s)


def _onset_spared(upload: Fingerprint, reference: np.ndarray) -> float:
    """How well the upload matches the phrase when its first moments are left out of the
    comparison: lost (an upload up to _LOST_ONSET_FRAMES short, lined up at the end) or
    damaged (its first _DAMAGED_ONSET_FRAMES). 0 when it is no whole-length candidate."""
    short = len(reference) - upload.frames
    if short > _LOST_ONSET_FRAMES or upload.frames - _DAMAGED_ONSET_FRAMES < _MIN_PREFIX_FRAMES:
        return 0.0
    tail = reference[max(0, short) :]
    return max(
        best_alignment(upload.bands, tail) if short > 0 else 0.0,
        best_alignment(upload.bands[_DAMAGED_ONSET_FRAMES:], tail[_DAMAGED_ONSET_FRAMES:]),
    )


def _prefix(text: str, fraction: float) -> str:
    words = text.split()
    if fraction >= 1.0:
        return text
    # Never the whole phrase: a cut-off must read differently from a full question.
    keep = min(len(words) - 1, max(1, round(len(words) * fraction)))
    return " ".join(words[:keep]).rstrip(",;:")


class PhraseBook:
    """The known phrases and their fingerprints, synthesised once each."""

    def __init__(self, voice: str, texts: Iterable[str] = DEFAULT_PHRASES) -> None:
        self.voice = voice
        self._texts: list[str] = []
        self._fingerprints: dict[str, Fingerprint] = {}
        self._lock = asyncio.Lock()
        self.add(texts)

    @property
    def texts(self) -> list[str]:
        return list(self._texts)

    def add(self, texts: Iterable[str]) -> list[str]:
        """Register phrases (blank and repeated ones are ignored); returns the new ones."""
        added = []
        for text in texts:
            clean = " ".join(text.split())
            if clean and clean not in self._texts:
                self._texts.append(clean)
                added.append(clean)
        return added

    async def fingerprints(self) -> dict[str, Fingerprint]:
        """Every phrase's fingerprint, synthesising the missing ones off the loop."""
        async with self._lock:
            missing = [text for text in self._texts if text not in self._fingerprints]
            speeches = await asyncio.gather(
                *(speech_for_async(text, self.voice) for text in missing)
            )
            loop = asyncio.get_running_loop()
            for text, speech in zip(missing, speeches, strict=True):
                samples = speech.samples.astype(np.float32) / 32768.0
                self._fingerprints[text] = await loop.run_in_executor(
                    None, partial(fingerprint, trim=False), samples, speech.sample_rate
                )
            return {text: self._fingerprints[text] for text in self._texts}

    async def recognise(self, samples: np.ndarray, sample_rate: int) -> Recognition:
        """Transcribe mono float samples without blocking the loop."""
        phrases = await self.fingerprints()
        loop = asyncio.get_running_loop()
        upload = await loop.run_in_executor(None, fingerprint, samples, sample_rate)
        return await loop.run_in_executor(None, match, upload, phrases)
