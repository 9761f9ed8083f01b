"""The player of one answer: sentences (or ready-made speech streams) in, sound out, in order.

Each sentence gets its own synthesis task the moment it is complete (at most
`tts_prefetch` ahead of the one playing), so sentence n+1 is being
synthesised while sentence n plays. Audio is decoded and resampled chunk by
chunk and handed to the speaker from the first decoded chunk. A speech stream
that needs no synthesis (Dify's in-stream `tts_message` audio, a whole answer
by `message_id`) takes the same path, as one item.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from assistant.audio.decoders import PcmChunk, SniffingDecoder
from assistant.audio.resample import StreamResampler
from assistant.audio.wav import AudioFormatError
from assistant.failures import service_name, stage_timeout
from assistant.marks import TurnMarks
from assistant.ports import AudioSink
from assistant.providers.base import AudioChunk, ServiceError, TextToSpeech
from assistant.settings import Settings

_END = None


@dataclass(frozen=True, slots=True)
class _Item:
    chunks: AsyncIterator[AudioChunk]
    service: str
    timeout_s: float


class SpeechPlayer:
    def __init__(
        self,
        tts: TextToSpeech,
        sink: AudioSink,
        marks: TurnMarks,
        *,
        prefetch: int,
        tts_timeout_s: float,
        play_timeout_s: float,
        drain_timeout_s: float,
        on_first_audio: Callable[[], None],
        hold: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`hold`: awaited before the first sample is played (a speculative turn's speech
        waits for its question to be confirmed; synthesis runs ahead meanwhile, at most
        `prefetch` items)."""
        self._tts = tts
        self._sink = sink
        self._marks = marks
        self._tts_timeout_s = tts_timeout_s
        self._play_timeout_s = play_timeout_s
        self._drain_timeout_s = drain_timeout_s
        self._on_first_audio = on_first_audio
        self._hold = hold
        self._items: asyncio.Queue[_Item | None] = asyncio.Queue()
        # Bounded: this is what limits how far synthesis runs ahead of playback.
        self._playlist: asyncio.Queue[asyncio.Queue[np.ndarray | None] | None] = asyncio.Queue(
            maxsize=prefetch
        )
        self._synth_tasks: set[asyncio.Task[None]] = set()
        self._own_tasks: list[asyncio.Task[None]] = []

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        tts: TextToSpeech,
        sink: AudioSink,
        marks: TurnMarks,
        *,
        on_first_audio: Callable[[], None],
        hold: Callable[[], Awaitable[None]] | None = None,
    ) -> SpeechPlayer:
        """A player with the configured prefetch and time limits."""
        audio = settings.audio
        return cls(
            tts,
            sink,
            marks,
            prefetch=settings.speech.tts_prefetch,
            tts_timeout_s=settings.http.tts_timeout_s,
            play_timeout_s=audio.device_timeout_s,
            drain_timeout_s=audio.playback_buffer_s + audio.device_timeout_s,
            on_first_audio=on_first_audio,
            hold=hold,
        )

    def say(self, sentence: str) -> None:
        """Synthesise `sentence` with the TTS provider and play it after what is queued."""
        self._items.put_nowait(
            _Item(self._tts.stream(sentence), service_name(self._tts), self._tts_timeout_s)
        )

    def play_stream(
        self, chunks: AsyncIterator[AudioChunk], service: str, timeout_s: float
    ) -> None:
        """Play an already-encoded speech stream after what is queued."""
        self._items.put_nowait(_Item(chunks, service, timeout_s))

    def finish(self) -> None:
        """Nothing more will be said."""
        self._items.put_nowait(_END)

    async def run(self) -> None:
        """Play everything said, in order, until finish(); raises the first failure."""
        try:
            async with asyncio.TaskGroup() as group:
                self._own_tasks = [
                    group.create_task(self._dispatch(group)),
                    group.create_task(self._play()),
                ]
        finally:
            for task in self._synth_tasks:
                task.cancel()

    def interrupt(self) -> None:
        """Silence now (a barge-in): cancel every stage of the speech, then flush.

        Cancelling first means no task can queue audio after the flush: each one
        meets its CancelledError at the await it is parked on.
        """
        for task in (*self._own_tasks, *self._synth_tasks):
            task.cancel()
        self._sink.flush()

    async def _dispatch(self, group: asyncio.TaskGroup) -> None:
        while (item := await self._items.get()) is not _END:
            pcm: asyncio.Queue[np.ndarray | None] = asyncio.Queue()
            await self._playlist.put(pcm)
            task = group.create_task(self._decode(item, pcm))
            self._synth_tasks.add(task)
            task.add_done_callback(self._synth_tasks.discard)
        await self._playlist.put(_END)

    async def _decode(self, item: _Item, out: asyncio.Queue[np.ndarray | None]) -> None:
        try:
            await self._decode_item(item, out)
        except AudioFormatError as exc:
            # The service sent something no decoder can play: its failure, by name.
            raise ServiceError(item.service, "tts", "bad_audio", str(exc)) from None

    async def _decode_item(self, item: _Item, out: asyncio.Queue[np.ndarray | None]) -> None:
        decoder: SniffingDecoder | None = None
        resampler: StreamResampler | None = None
        rate = self._sink.sample_rate

        def emit(chunks: list[PcmChunk]) -> None:
            nonlocal resampler
            for chunk in chunks:
                if resampler is None:
                    resampler = StreamResampler(chunk.sample_rate, rate)
                samples = resampler.process(chunk.samples)
                if len(samples):
                    out.put_nowait(samples)

        try:
            async with stage_timeout(item.service, "tts", item.timeout_s):
                async for piece in item.chunks:
                    self._marks.mark("first_tts_byte")
                    if decoder is None:
                        # Sniffs the first bytes too: services mislabel bodies (older
                        # Dify calls everything audio/mpeg), and a first chunk may be tiny.
                        decoder = SniffingDecoder(piece.content_type)
                    emit(decoder.feed(piece.data))
        finally:
            await item.chunks.aclose()  # type: ignore[attr-defined]
        if decoder is not None:
            emit(decoder.close())
        if resampler is not None:
            tail = resampler.flush()
            if len(tail):
                out.put_nowait(tail)
        out.put_nowait(_END)

    async def _play(self) -> None:
        while (pcm := await self._playlist.get()) is not _END:
            while (samples := await pcm.get()) is not _END:
                if "first_audio" not in self._marks.times:
                    if self._hold is not None:
                        await self._hold()
                    self._marks.mark("first_audio")
                    self._on_first_audio()
                await self._sink.play(samples, timeout=self._play_timeout_s)
        await self._sink.drain(timeout=self._drain_timeout_s)
        self._marks.mark("last_audio")
