"""Finds utterances in the 16 kHz microphone stream with webrtcvad.

Hands-free: an utterance opens once `start_ms` of voiced frames fall within a
short window (so a lone click does not open one), carries `preroll_ms` of audio
from before its first voiced frame (so the first syllable is not clipped), and
ends after `hangover_ms` of unbroken unvoiced frames. The silence uploaded after
the last voiced frame is trimmed to TAIL_MS. Utterances with less than
`min_speech_ms` of voiced audio are dropped; one reaching `max_utterance_s` is
ended right there.

A frame is voiced when webrtcvad says so and it is ENERGY_MARGIN_DB above the
running noise floor; the first WARMUP_MS after creation or `reset` only train
the VAD and the floor.

Pauses (with `pause_events`, hands-free only, for speculative work): once an
utterance with at least `min_speech_ms` of voiced audio has been silent for
`speculate_after_ms`, SpeechPaused carries what would be uploaded if it ended
there; a voiced frame after that is SpeechResumed. The hangover alone still ends
the utterance.

Push-to-talk: `begin_manual` opens an utterance at once (with the pre-roll),
every frame is kept whatever the VAD says, and `end_manual` closes it.

Times are `time.monotonic()` values derived from each block's `t_start` plus
the sample offset within it, so they do not depend on how audio was blocked.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import webrtcvad

from assistant.audio.wav import encode_wav
from assistant.ports import CAPTURE_RATE, AudioBlock
from assistant.settings import VadSettings

SAMPLE_RATE = CAPTURE_RATE
TAIL_MS = 100
"""Silence kept after the last voiced frame: enough for a natural word ending."""
WARMUP_MS = 100
"""A fresh webrtcvad calls the first ~80 ms of any noise speech while its noise
model settles; its verdicts are ignored (the audio still goes to the pre-roll)."""
ENERGY_MARGIN_DB = 3.0
"""A frame webrtcvad calls speech only counts as voiced if it is this much louder
than the running noise floor. webrtcvad keeps saying "speech" for a few frames
after any loud frame (its own hangover), so without this one click would look
like 80 ms of speech, and it takes loud steady noise (a fan) for speech. 3 dB
still keeps speech at 5 dB SNR; 6 dB starts losing its quieter syllables."""
_FLOOR_RISE = 0.05
"""Per-frame weight when the noise floor creeps up (slow: speech must not lift it)."""
_FLOOR_FALL = 0.5
"""Per-frame weight when the floor drops (fast: a quieter room is trusted at once)."""
_GATED_FRACTION = 0.25
"""A frame with more exact zeros than this was (partly) silenced digitally: room noise
has a zero sample now and then (about 1 % at -60 dBFS), never a quarter of them."""


class EndReason(StrEnum):
    SILENCE = "silence"
    """The hangover elapsed."""
    MAX_LENGTH = "max_length"
    """`max_utterance_s` was reached."""
    MANUAL = "manual"
    """`end_manual` (talk button released)."""
    FLUSH = "flush"
    """`flush` at the end of the input."""


class DropReason(StrEnum):
    TOO_SHORT = "too_short"
    """Less voiced audio than `min_speech_ms` (a click, a cough, a tap of the button)."""


@dataclass(frozen=True, slots=True)
class Utterance:
    samples: np.ndarray
    """int16 mono at 16 kHz: pre-roll, speech and a short tail."""
    t_start: float
    """Monotonic time of the first sample."""
    t_speech_end: float
    """End of the last voiced frame (manual: the time given to `end_manual`)."""
    t_detected: float
    """End of the frame that decided the utterance was over."""
    speech_ms: int
    """Voiced audio in the utterance, in ms."""

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def to_wav_bytes(self) -> bytes:
        """16 kHz mono s16le RIFF/WAVE, ready to upload."""
        return encode_wav(self.samples, SAMPLE_RATE)


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    t: float
    """Start of the first voiced frame of the utterance (speech onset)."""
    t_detected: float
    """End of the frame that opened the utterance."""


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    utterance: Utterance
    """The utterance so far, exactly as UtteranceEnded will carry it if no speech follows
    (same samples; `t_detected` is when the pause was noticed)."""
    t: float
    """End of the frame that completed `speculate_after_ms` of silence."""


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    t: float
    """Start of the voiced frame that broke the pause."""


@dataclass(frozen=True, slots=True)
class UtteranceEnded:
    utterance: Utterance
    reason: EndReason


@dataclass(frozen=True, slots=True)
class UtteranceDropped:
    reason: DropReason
    speech_ms: int


EndpointEvent = SpeechStarted | SpeechPaused | SpeechResumed | UtteranceEnded | UtteranceDropped


class _Ring:
    """The last `capacity` frames with their start times and VAD flags, in one array."""

    def __init__(self, capacity: int, frame_len: int) -> None:
        self.capacity = capacity
        self._frames = np.zeros((capacity, frame_len), dtype=np.int16)
        self._times = np.zeros(capacity, dtype=np.float64)
        self._voiced = np.zeros(capacity, dtype=bool)
        self._next = 0
        self.count = 0

    def push(self, frame: np.ndarray, t: float, voiced: bool) -> None:
        self._frames[self._next] = frame
        self._times[self._next] = t
        self._voiced[self._next] = voiced
        self._next = (self._next + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)

    def last(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames, times and flags of the newest `n` frames, oldest first."""
        n = min(n, self.count)
        order = (np.arange(self._next - n, self._next)) % self.capacity
        return self._frames[order], self._times[order], self._voiced[order]

    def clear(self) -> None:
        self._next = 0
        self.count = 0


class Endpointer:
    """Turns AudioBlocks into SpeechStarted / SpeechPaused / SpeechResumed / UtteranceEnded /
    UtteranceDropped events."""

    def __init__(
        self, settings: VadSettings, *, hands_free: bool = True, pause_events: bool = False
    ) -> None:
        """`hands_free=False` never opens an utterance on its own (push-to-talk only);
        `pause_events` adds SpeechPaused / SpeechResumed after `speculate_after_ms`."""
        if settings.frame_ms not in (10, 20, 30):
            raise ValueError(f"webrtcvad frames are 10, 20 or 30 ms, not {settings.frame_ms}")
        self.settings = settings
        self.hands_free = hands_free
        self._frame_ms = settings.frame_ms
        self._frame_len = SAMPLE_RATE * settings.frame_ms // 1000
        self._frame_s = settings.frame_ms / 1000
        self._start_frames = max(1, math.ceil(settings.start_ms / settings.frame_ms))
        # "Mostly voiced lately": start_frames voiced out of a window half as long again.
        self._window_frames = self._start_frames + math.ceil(self._start_frames / 2)
        self._preroll_frames = math.ceil(settings.preroll_ms / settings.frame_ms)
        self._hangover_frames = max(1, math.ceil(settings.hangover_ms / settings.frame_ms))
        # 0 = no pause events: not asked for, or the pause would only come with the end.
        pause_frames = max(1, math.ceil(settings.speculate_after_ms / settings.frame_ms))
        self._pause_frames = (
            pause_frames if pause_events and pause_frames < self._hangover_frames else 0
        )
        self._tail_frames = math.ceil(TAIL_MS / settings.frame_ms)
        self._warmup_frames = math.ceil(WARMUP_MS / settings.frame_ms)
        self._max_frames = max(1, int(settings.max_utterance_s * 1000 // settings.frame_ms))
        self._ring = _Ring(self._preroll_frames + self._window_frames, self._frame_len)
        # One preallocated buffer for the open utterance: no allocation per frame.
        # Room for the cap plus a whole pre-roll ring, which is copied in at once.
        capacity = self._max_frames + self._ring.capacity
        self._buffer = np.zeros(capacity * self._frame_len, dtype=np.int16)
        self._buffer_voiced = np.zeros(capacity, dtype=bool)
        self.reset()

    # ------------------------------------------------------------ public API

    @property
    def in_utterance(self) -> bool:
        return self._open

    @property
    def speech_ms(self) -> int:
        """Voiced audio in the open utterance so far (0 when none is open)."""
        return self._voiced_frames * self._frame_ms if self._open else 0

    @property
    def last_voiced_end(self) -> float:
        """When the open utterance's last voiced frame ended (time.monotonic())."""
        return self._last_voiced_end if self._open else 0.0

    @property
    def manual(self) -> bool:
        return self._manual

    def reset(self) -> None:
        """Forget everything: pre-roll, partial frame, any open utterance, VAD state.

        The VAD starts afresh too: its internal hangover from the last turn's
        speech must not open the next utterance.
        """
        self._vad = webrtcvad.Vad(self.settings.aggressiveness)
        self._warmup_left = self._warmup_frames
        self._floor_db: float | None = None
        self._ring.clear()
        self._window: deque[bool] = deque(maxlen=self._window_frames)
        self._remainder = np.zeros(0, dtype=np.int16)
        self._remainder_heard = self._remainder
        self._remainder_t = 0.0
        self._open = False
        self._manual = False
        self._manual_capped = False
        self._frames = 0
        self._t_start = 0.0
        self._voiced_frames = 0
        self._last_voiced = -1
        self._last_voiced_end = 0.0
        self._unvoiced_run = 0
        self._paused = False

    def forget_audio(self) -> None:
        """Drop the pre-roll heard so far (a wake word): an utterance opened later starts
        after it. The VAD and its noise floor carry on."""
        if not self._open:
            self._ring.clear()
            self._window.clear()

    def process(self, block: AudioBlock) -> list[EndpointEvent]:
        """Classify the whole frames this block completes; keep the rest for next time."""
        samples, heard = block.samples, block.detected
        held = len(self._remainder)
        if held:
            samples = np.concatenate((self._remainder, samples))
            heard = np.concatenate((self._remainder_heard, heard))
        whole = len(samples) // self._frame_len
        events: list[EndpointEvent] = []
        for i in range(whole):
            offset = i * self._frame_len
            span = slice(offset, offset + self._frame_len)
            # Only the first frame can straddle the previous block.
            if offset < held:
                t = self._remainder_t + offset / SAMPLE_RATE
            else:
                t = block.t_start + (offset - held) / SAMPLE_RATE
            event = self._frame(samples[span], heard[span], t)
            if event is not None:
                events.append(event)
        rest = whole * self._frame_len
        if rest < held:
            self._remainder_t += rest / SAMPLE_RATE
        elif rest < len(samples):
            self._remainder_t = block.t_start + (rest - held) / SAMPLE_RATE
        self._remainder = samples[rest:].copy()
        self._remainder_heard = heard[rest:].copy()
        return events

    def begin_manual(self, t: float) -> None:
        """Open an utterance now (talk button pressed at `t`), with the pre-roll before it.

        An utterance already opened by the VAD is taken over, audio and all.
        """
        self._manual = True
        self._manual_capped = False
        if self._open:
            return
        frames, times, voiced = self._ring.last(self._preroll_frames)
        keep = times + self._frame_s > t - self.settings.preroll_ms / 1000
        self._start_utterance(frames[keep], times[keep], voiced[keep], t)

    def end_manual(self, t: float) -> UtteranceEnded | UtteranceDropped | None:
        """Close the manual utterance (button released at `t`).

        None when there is none: never begun, or already ended by the length cap.
        """
        was_open = self._manual and self._open
        self._manual_capped = False
        if not was_open:
            self._manual = False
            return None
        return self._finish(EndReason.MANUAL, t_detected=t, t_speech_end=t)

    def drop_speech_before(self, t: float, gap_ms: int) -> float | None:
        """Drop from the open utterance the voice that ended before `t` and was followed by
        at least `gap_ms` of unvoiced audio: it then starts with the pre-roll of the voice
        after that gap (never reaching back into what was dropped). Returns when the
        utterance now starts, or None when nothing was dropped."""
        if not self._open or self._manual:
            return None
        gap = math.ceil(gap_ms / self._frame_ms)
        voiced = np.flatnonzero(self._buffer_voiced[: self._frames])
        gaps = np.flatnonzero(np.diff(voiced) > gap)  # voiced[k] then voiced[k + 1]
        ended_before = self._t_start + (voiced[gaps] + 1) * self._frame_s <= t
        gaps = gaps[ended_before]
        if len(gaps) == 0:
            return None
        last, after = int(voiced[gaps[-1]]), int(voiced[gaps[-1] + 1])
        begin = max(last + 1, after - self._preroll_frames)
        length = self._frames - begin
        size = self._frame_len
        self._buffer[: length * size] = self._buffer[begin * size : self._frames * size].copy()
        self._buffer_voiced[:length] = self._buffer_voiced[begin : self._frames].copy()
        self._frames = length
        self._t_start += begin * self._frame_s
        self._voiced_frames = int(np.count_nonzero(self._buffer_voiced[:length]))
        self._last_voiced -= begin
        return self._t_start

    def flush(self, t: float) -> list[EndpointEvent]:
        """End of input: close an open utterance as if its hangover had elapsed."""
        self._remainder = self._remainder_heard = np.zeros(0, dtype=np.int16)
        if not self._open:
            return []
        t_end = t if self._manual else self._last_voiced_end
        return [self._finish(EndReason.FLUSH, t_detected=t, t_speech_end=t_end)]

    # ------------------------------------------------------------ internals

    def _is_voiced(self, frame: np.ndarray) -> bool:
        speech = self._vad.is_speech(frame.tobytes(), SAMPLE_RATE)
        as_float = frame.astype(np.float32)
        level_db = 10.0 * math.log10(float(np.dot(as_float, as_float)) / len(frame) + 1.0)
        if self._warmup_left:
            self._warmup_left -= 1
            speech = False
        # Digital silence (what the self-sound gate or the echo canceller put in place of
        # the device's own sound, a padded block), whole or in part, is not the room: it
        # must not pull the floor down, or the room's own noise after it would pass for
        # speech (webrtcvad, having heard nothing, calls it speech) and, voiced, never
        # lift the floor again.
        gated = np.count_nonzero(frame == 0) > len(frame) * _GATED_FRACTION
        if self._floor_db is None:
            self._floor_db = level_db
        voiced = speech and level_db > self._floor_db + ENERGY_MARGIN_DB
        if not voiced and not gated:
            weight = _FLOOR_RISE if level_db > self._floor_db else _FLOOR_FALL
            self._floor_db += weight * (level_db - self._floor_db)
        return voiced

    def _frame(self, frame: np.ndarray, heard: np.ndarray, t: float) -> EndpointEvent | None:
        """`frame` is kept (pre-roll, utterance); `heard` is what the VAD goes by."""
        voiced = self._is_voiced(heard)
        t_end = t + self._frame_s
        if self._open:
            self._append(frame, t, voiced)
            if self._frames >= self._max_frames:
                t_speech_end = t_end if self._manual else self._last_voiced_end
                # A held button keeps holding: don't let the VAD open a new
                # utterance until it is released.
                self._manual_capped = self._manual
                return self._finish(EndReason.MAX_LENGTH, t_end, t_speech_end)
            if self._manual:
                return None
            if self._unvoiced_run >= self._hangover_frames:
                return self._finish(EndReason.SILENCE, t_end, self._last_voiced_end)
            return self._pause_event(voiced, t, t_end)
        self._ring.push(frame, t, voiced)
        self._window.append(voiced)
        if not self.hands_free or self._manual_capped or sum(self._window) < self._start_frames:
            return None
        # Open with the pre-roll counted back from the window's first voiced frame.
        frames, times, flags = self._ring.last(self._ring.capacity)
        window_start = len(flags) - len(self._window)
        first_voiced = window_start + int(np.argmax(flags[window_start:]))
        begin = max(0, first_voiced - self._preroll_frames)
        self._start_utterance(frames[begin:], times[begin:], flags[begin:], t_end)
        return SpeechStarted(t=float(times[first_voiced]), t_detected=t_end)

    def _pause_event(self, voiced: bool, t: float, t_end: float) -> EndpointEvent | None:
        if voiced and self._paused:
            self._paused = False
            return SpeechResumed(t)
        if (
            self._pause_frames
            and self._unvoiced_run == self._pause_frames
            and self._last_voiced >= 0
            and self._voiced_frames * self._frame_ms >= self.settings.min_speech_ms
        ):
            self._paused = True
            so_far = Utterance(
                self._uploaded(EndReason.SILENCE),
                self._t_start,
                self._last_voiced_end,
                t_end,
                self._voiced_frames * self._frame_ms,
            )
            return SpeechPaused(so_far, t_end)
        return None

    def _start_utterance(
        self, frames: np.ndarray, times: np.ndarray, voiced: np.ndarray, t_now: float
    ) -> None:
        self._open = True
        self._frames = 0
        self._voiced_frames = 0
        self._last_voiced = -1
        self._last_voiced_end = t_now
        self._unvoiced_run = 0
        self._paused = False
        self._t_start = float(times[0]) if len(times) else t_now
        for frame, t, flag in zip(frames, times, voiced, strict=True):
            self._append(frame, float(t), bool(flag))
        self._ring.clear()
        self._window.clear()

    def _append(self, frame: np.ndarray, t: float, voiced: bool) -> None:
        if self._frames == 0:
            self._t_start = t
        start = self._frames * self._frame_len
        self._buffer[start : start + self._frame_len] = frame
        self._buffer_voiced[self._frames] = voiced
        self._frames += 1
        if voiced:
            self._voiced_frames += 1
            self._last_voiced = self._frames - 1
            self._last_voiced_end = t + self._frame_s
            self._unvoiced_run = 0
        else:
            self._unvoiced_run += 1

    def _uploaded(self, reason: EndReason) -> np.ndarray:
        """A copy of the audio to upload if the utterance ended now for `reason`."""
        frames = self._frames
        # Hangover silence is only there to be sure speech ended; don't upload it.
        # Push-to-talk audio is the user's own choice of span and is kept whole.
        if not self._manual and reason is not EndReason.MAX_LENGTH and self._last_voiced >= 0:
            frames = min(frames, self._last_voiced + 1 + self._tail_frames)
        return self._buffer[: frames * self._frame_len].copy()

    def _finish(
        self, reason: EndReason, t_detected: float, t_speech_end: float
    ) -> UtteranceEnded | UtteranceDropped:
        speech_ms = self._voiced_frames * self._frame_ms
        samples = self._uploaded(reason)
        self._open = False
        self._manual = False
        self._paused = False
        self._frames = 0
        self._window.clear()
        if speech_ms < self.settings.min_speech_ms:
            return UtteranceDropped(DropReason.TOO_SHORT, speech_ms)
        utterance = Utterance(samples, self._t_start, t_speech_end, t_detected, speech_ms)
        return UtteranceEnded(utterance, reason)
