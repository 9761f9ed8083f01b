"""Talking over the answer through a real room (bench/echo_path.py's scenario, shorter).

PyAudio on the PulseAudio null sinks with a `module-loopback` from the speaker sink's
monitor into the microphone sink (a room), the dev server behind. With echo cancellation
(the default when it is installed), answers with no one speaking are never interrupted
and the device's voice is never uploaded; an interjection in another voice interrupts the
answer within 300 ms, becomes the next question and is answered in full. Half-duplex with
barge-in by voice forced on, the same room makes the device interrupt itself: the
canceller does the work.

An interjection's first 100-300 ms overlap the device's voice and come out ducked by AEC3,
and the dev server's fingerprint recogniser misreads some: 9 of 10 read right in the room
as loud as the user (20 ms), 7-8 of 10 in the 120 ms room with the echo 6 dB louder
(bench.echo_path, bench/RESULTS.md). Of two interjections, so, at least one is asserted
read right in the first room (both were, until one fresh-clone run read one as 0.5 s of
speech), none in the second; in both the device's own voice is asserted never uploaded.
"""

from __future__ import annotations

import pytest
from pulse import PulseServer

from assistant.devserver import RunningDevServer
from bench.echo_path import measure_room

pytestmark = pytest.mark.pulse


@pytest.mark.parametrize(("delay_ms", "gain_db", "least_understood"), [(20, 0.0, 1), (120, 6.0, 0)])
async def test_with_echo_cancellation_only_the_user_interrupts(
    pulse: PulseServer,
    server: RunningDevServer,
    delay_ms: int,
    gain_db: float,
    least_understood: int,
) -> None:
    room = await measure_room(pulse, server, delay_ms, gain_db, quiet=1, interjected=2)
    assert room.quiet_answers == 1
    assert room.self_interruptions == 0
    assert room.interrupted == room.interjections == 2
    assert room.taken == room.answered_in_full == 2
    # Every upload was a question asked: the device's own voice never was one (what the
    # recogniser misreads are the interjections themselves, see the module's docstring).
    assert len(room.misheard) <= room.interjections - room.understood
    assert room.understood >= least_understood, room.misheard
    assert max(room.latencies_ms) <= 300, room.latencies_ms


async def test_without_echo_cancellation_the_device_interrupts_itself(
    pulse: PulseServer, server: RunningDevServer
) -> None:
    room = await measure_room(pulse, server, 60, 0.0, quiet=1, interjected=0, cancel_echo=False)
    assert room.self_interruptions >= 1
