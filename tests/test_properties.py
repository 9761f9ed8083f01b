"""Property-based tests: the SSE parser, the sentence chunker and the endpointer hold
their promises for inputs nobody thought to write down."""

from __future__ import annotations

import itertools

import numpy as np
from audio_samples import blocks, concat, noise, silence, speech_16k, tone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.audio.endpointer import Endpointer, UtteranceEnded
from assistant.ports import AudioBlock
from assistant.settings import VadSettings
from assistant.text.sentences import SentenceChunker
from assistant.text.sse import SSEParser

# ---------------------------------------------------------------------------- SSE

_names = st.sampled_from(["message", "message_end", "ping", "tts_message", "error", "ä-event"])
_lines = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=40,
)
_events = st.lists(st.tuples(_names, st.lists(_lines, min_size=1, max_size=3)), max_size=8)


def _encode(events: list[tuple[str, list[str]]], newline: str) -> bytes:
    out = []
    for name, data_lines in events:
        out.append(f"event: {name}{newline}")
        out.extend(f"data: {line}{newline}" for line in data_lines)
        out.append(newline)
    return "".join(out).encode()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=200, deadline=None)
@given(_events, st.sampled_from(["\n", "\r\n", "\r"]), st.lists(st.integers(0, 10_000)))
def test_sse_events_survive_any_split_and_line_ending(
    events: list[tuple[str, list[str]]], newline: str, cuts: list[int]
) -> None:
    stream = _encode(events, newline)
    parser = SSEParser()
    got = [e for piece in _split(stream, cuts) for e in parser.feed(piece)] + parser.close()
    assert [(e.event, e.data) for e in got] == [(n, "\n".join(d)) for n, d in events]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(0, 3000), max_size=10))
def test_sse_parser_never_crashes_on_garbage(data: bytes, cuts: list[int]) -> None:
    parser = SSEParser()
    for piece in _split(data, cuts):
        parser.feed(piece)
    parser.close()


# ------------------------------------------------------------------------ chunker

_words = st.text(alphabet="abcdefghij", min_size=1, max_size=9)
_marks = st.sampled_from([" ", " ", " ", ", ", ". ", "! ", "? ", "\n"])
_text = st.lists(st.tuples(_words, _marks), max_size=60).map(
    lambda pairs: "".join(w + m for w, m in pairs)
)


@settings(max_examples=200, deadline=None)
@given(_text, st.lists(st.integers(0, 1000), max_size=20), st.integers(0, 30))
def test_chunker_keeps_every_word_in_order_whatever_the_deltas(
    text: str, cuts: list[int], min_chars: int
) -> None:
    whole = SentenceChunker(min_chars=min_chars, max_chars=120)
    expected = whole.feed(text) + whole.flush()
    chunker = SentenceChunker(min_chars=min_chars, max_chars=120)
    points = sorted({c % (len(text) + 1) for c in cuts})
    edges = [0, *points, len(text)]
    got = [s for a, b in itertools.pairwise(edges) for s in chunker.feed(text[a:b])]
    got += chunker.flush()
    assert got == expected
    assert all(sentence.strip() for sentence in got)
    assert all(len(sentence) <= 120 for sentence in got)
    spoken = "".join(ch for ch in " ".join(got) if ch.isalpha() or ch == " ").split()
    assert spoken == "".join(ch for ch in text if ch.isalpha() or ch.isspace()).split()


# --------------------------------------------------------------------- endpointer

_SEGMENTS = {
    "silence": lambda: silence(400),
    "noise": lambda: noise(300, rms=200),
    "click": lambda: noise(60, rms=8000, seed=3),
    "tone": lambda: tone(250, 440),
    "speech": lambda: speech_16k("Turn on the kitchen lights."),
}


def _run(endpointer: Endpointer, pieces: list[AudioBlock]) -> list[UtteranceEnded]:
    ended = [e for b in pieces for e in endpointer.process(b) if isinstance(e, UtteranceEnded)]
    t_end = pieces[-1].t_start + len(pieces[-1].samples) / 16_000
    ended += [e for e in endpointer.flush(t_end) if isinstance(e, UtteranceEnded)]
    return ended


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(sorted(_SEGMENTS)), min_size=1, max_size=6),
    st.sampled_from([10, 20, 37, 100, 333]),
)
def test_endpointer_is_independent_of_blocking_and_bounded(
    segments: list[str], block_ms: int
) -> None:
    audio = concat(silence(200), *[_SEGMENTS[name]() for name in segments], silence(700))
    vad = VadSettings(max_utterance_s=3.0)
    reference = _run(Endpointer(vad), blocks(audio, 20))
    got = _run(Endpointer(vad), blocks(audio, block_ms))
    assert [(round(u.utterance.t_start, 6), len(u.utterance.samples)) for u in got] == [
        (round(u.utterance.t_start, 6), len(u.utterance.samples)) for u in reference
    ]
    t0 = blocks(audio, 20)[0].t_start
    previous_end = t0
    for ended in got:
        utterance = ended.utterance
        assert utterance.speech_ms >= vad.min_speech_ms
        assert utterance.duration <= vad.max_utterance_s + vad.preroll_ms / 1000 + 0.05
        assert utterance.t_start >= previous_end - 1e-6  # no overlap, in order
        previous_end = utterance.t_start + utterance.duration
        assert np.array_equal(
            utterance.samples,
            audio[round((utterance.t_start - t0) * 16_000) :][: len(utterance.samples)],
        )
