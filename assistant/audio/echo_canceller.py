"""Taking the device's own voice out of what its microphone hears: WebRTC's AEC3.

The canceller is pywebrtc-audio's `EchoCanceller` (the AEC3 that Chrome runs; prebuilt
wheels for x86_64 and aarch64, about 1 MB, under 1 % of a core here at 16 kHz). Each
captured block is processed with the reference for the same moment from `FarEnd` (what
the speaker played, timed by the devices' own latencies), so AEC3 only has to find the
room's delay, which its delay estimator does within about a second of speech.

The library is imported only when a canceller is built.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from typing import TYPE_CHECKING

import numpy as np

from assistant.audio.far_end import FarEnd
from assistant.ports import CAPTURE_RATE, AudioBlock

if TYPE_CHECKING:
    from pywebrtc_audio import EchoCanceller as Aec3

log = logging.getLogger(__name__)

LIBRARY = "pywebrtc_audio"
ECHO_ONLY_DB = -30.0
"""While the device plays, a block the canceller took this much or more out of was its
own echo and nothing else: AEC3 leaves a residual 30 to 50 dB down, which a VAD on a
quiet microphone still calls voice. Such a block is silence to detection. A user talking
over the answer keeps the block within ~25 dB of what the microphone heard, even where
their voice is 15-20 dB under the answer's echo and AEC3 ducks it: at -20 dB, half the
interjections that failed in the 120 ms rooms (`bench.echo_path`) had their first 300 ms
taken for echo, the answer paused that much later, and the longer overlap cost the
question its first words (26 of 40 understood in the four loudest/latest rooms at -20,
33 of 40 at -30; false pauses 0 and 2 in 20 quiet answers)."""


RESIDUAL_MARGIN_DB = 6.0
"""... and so is a block no more than this above what the canceller leaves of the echo in
such blocks (a running level): where the answer is quiet (a soft syllable, a breath)
there is less than 30 dB to take out, and the residual is all that is left. A user's
voice, even at a whisper's -45 dBFS, is far above AEC3's residual."""
_RESIDUAL_WEIGHT = 0.05
"""Per echo-only block, how far the residual level moves towards that block's level."""


ECHO_TAIL_S = 0.3
"""How long after the reference falls silent its echo may still arrive: the room's delay
(up to 120 ms tested) and reverberation."""


def _level_db(samples: np.ndarray) -> float:
    as_float = samples.astype(np.float64)
    return 10.0 * float(np.log10(np.dot(as_float, as_float) / max(1, len(samples)) + 1.0))


@functools.cache
def processing_lag() -> int:
    """Samples by which AEC3's output trails its input (8 ms in pywebrtc-audio 0.2),
    measured once with noise rather than assumed: output blocks are timed by it."""
    from pywebrtc_audio import EchoCanceller as Aec3

    aec = Aec3(sample_rate=CAPTURE_RATE, num_channels=1)
    noise = np.random.default_rng(0).normal(0, 3000, CAPTURE_RATE // 2).astype(np.int16)
    out = aec.process(noise, np.zeros_like(noise)).astype(np.float64)
    lags = np.correlate(out, noise.astype(np.float64), "full")
    return max(0, int(np.argmax(lags)) - (len(noise) - 1))


def available() -> bool:
    """Whether the canceller's library is installed (it is, unless left out on purpose)."""
    return importlib.util.find_spec(LIBRARY) is not None


class EchoCanceller:
    """Cancels the far end's echo in each captured block, keeping the block's timing."""

    def __init__(self, far_end: FarEnd, reference_delay_ms: int = 0) -> None:
        """`reference_delay_ms`: added to the devices' own latencies when the reference
        is looked up (for a sound path they do not report); 0 trusts them."""
        from pywebrtc_audio import EchoCanceller as Aec3

        self._far_end = far_end
        self._delay_s = reference_delay_ms / 1000
        self._aec: Aec3 = Aec3(sample_rate=CAPTURE_RATE, num_channels=1, stream_delay_ms=0)
        self.lag_s = processing_lag() / CAPTURE_RATE
        """How much later than the microphone's timestamps the output is: its blocks are
        timed that much earlier, so that what follows sees the true times."""
        self._echo_until = 0.0
        """Until when the room may still carry what was played (the last played block, plus
        ECHO_TAIL_S)."""
        self.user_talking = False
        """Set while the user is known to be talking (an utterance is open): nothing is
        silenced as echo then, since AEC3 ducks the first moments of double talk hard and
        a hole in the question is worse than a trace of echo in it."""
        self.echo_only_s = 0.0
        """Audio silenced as nothing but the device's own echo (for tests and benchmarks)."""
        self._residual_db: float | None = None
        """What the canceller leaves of the echo (running level of echo-only blocks)."""

    def __call__(self, block: AudioBlock) -> AudioBlock:
        # Blocks are whole periods (multiples of AEC3's 10 ms frames at the usual 10, 20
        # or 30 ms), so the library's padding of a last partial frame never happens.
        far = self._far_end.window(block.t_start - self._delay_s, len(block.samples))
        out = self._aec.process(block.samples, far)
        if far.any():
            self._echo_until = block.t_start + block.duration + ECHO_TAIL_S
        t_out = block.t_start - self.lag_s
        echoing = block.t_start < self._echo_until and not self.user_talking
        if not echoing or not self._echo_only(block.samples, out, block.t_start):
            return AudioBlock(out, t_out)
        # Silent to detection only: should the user's first sound be in it (AEC3 ducks
        # the onset of double talk hard), the recording still holds it.
        self.echo_only_s += len(out) / CAPTURE_RATE
        return AudioBlock(out, t_out, heard=np.zeros_like(out))

    def _echo_only(self, near: np.ndarray, out: np.ndarray, t: float) -> bool:
        """Whether a block heard while the device played holds nothing but its echo."""
        if self._far_end.realigning(t):
            return True  # echo the canceller may not have found in this stream yet
        left_db = _level_db(out)
        if left_db - _level_db(near) <= ECHO_ONLY_DB:
            if self._residual_db is None:
                self._residual_db = left_db
            self._residual_db += _RESIDUAL_WEIGHT * (left_db - self._residual_db)
            return True
        return self._residual_db is not None and left_db <= self._residual_db + RESIDUAL_MARGIN_DB

    @property
    def far_end(self) -> FarEnd:
        """The reference it cancels (the loop tells it when playback is cut off)."""
        return self._far_end

    def reset(self) -> None:
        """Start converging afresh (after the devices were reopened: a new room path)."""
        self._aec.reset()
        self._far_end.clear()
        self._residual_db = None
