"""How one answer is spoken: the answer stream goes in piece by piece, sound comes out.

The turn hands every piece of the streamed answer to `SpeechOut.take` and calls `finish`
when the stream ends; everything about turning it into sound is decided here:

- the text is cut into sentences as it arrives (each is published as it completes);
- where the speech comes from (`Stages.speech_source`): each sentence synthesised as soon
  as it is complete; or the answer stream's own audio (Dify `tts_message`), the sentences
  held back and said only if the stream brings no audio; or, once the answer is complete,
  Dify speaking its stored answer by `message_id` (the text again if Dify has no audio);
- a moderation replacement (Dify `message_replace`) silences what was being said, with the
  same cancel-then-flush as a barge-in, and the replacement is said sentence by sentence,
  whatever the source: the stream's audio and the stored message are the old answer's.

`SpeechPlayer` (assistant.speech_player) does the synthesis ahead of playback and the
playing itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from assistant.failures import service_name
from assistant.providers.base import AudioChunk, Delta, ServiceError, SpeechSource, Stages
from assistant.speech_player import SpeechPlayer
from assistant.text.sentences import SentenceChunker

log = logging.getLogger(__name__)


class _AudioFeed:
    """Audio pieces pushed from the answer stream, pulled by the player."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[AudioChunk | None] = asyncio.Queue()
        self.closed = False

    def put(self, chunk: AudioChunk) -> None:
        if not self.closed:
            self._queue.put_nowait(chunk)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        while (chunk := await self._queue.get()) is not None:
            yield chunk


class SpeechOut:
    """One answer's speech: `take` each piece of the stream, `finish`, and `run` plays it."""

    def __init__(
        self,
        stages: Stages,
        new_player: Callable[[], SpeechPlayer],
        new_chunker: Callable[[], SentenceChunker],
        *,
        stream_timeout_s: float,
        tts_timeout_s: float,
        on_text: Callable[[], None],
        on_sentence: Callable[[str], None],
        on_replaced: Callable[[str], None],
    ) -> None:
        """`new_player` makes the player (again, after a replacement); `stream_timeout_s`
        bounds the answer stream's own audio, `tts_timeout_s` a message's synthesis.
        `on_text` runs for every text piece (the first is the turn's first token),
        `on_sentence` for each complete sentence, `on_replaced` with a replacement answer."""
        self._stages = stages
        self._source = stages.speech_source
        self._new_player = new_player
        self._new_chunker = new_chunker
        self._stream_timeout_s = stream_timeout_s
        self._tts_timeout_s = tts_timeout_s
        self._on_text = on_text
        self._on_sentence = on_sentence
        self._on_replaced = on_replaced
        self._player = new_player()
        self._chunker = new_chunker()
        self._held: list[str] = []
        """Sentences not sent to synthesis: the answer is expected to bring its own speech."""
        self._feed: _AudioFeed | None = None
        self._message_id: str | None = None
        self.text = ""
        """The answer so far (the replacement, after one)."""

    async def run(self) -> None:
        """Play the answer until `finish`; raises the first failure of the current player.

        A replacement swaps the player: the old one was silenced and ends; its failures
        are the old answer's and no longer matter.
        """
        while True:
            player = self._player
            try:
                await player.run()
            except Exception:
                if player is self._player:
                    raise
            if player is self._player:
                return

    def take(self, delta: Delta) -> None:
        """One piece of the answer stream."""
        self._message_id = delta.message_id or self._message_id
        if delta.audio or delta.audio_done:
            self._stream_audio(delta)
            return
        self._on_text()
        if delta.replace is not None:
            self._replace(delta.replace)
            return
        self.text += delta.text
        for sentence in self._chunker.feed(delta.text):
            self._sentence(sentence)

    def finish(self) -> str:
        """The stream has ended: say what is left; nothing more will be said. The answer."""
        for sentence in self._chunker.flush():
            self._sentence(sentence)
        service = service_name(self._stages.completion)
        if self._feed is not None:
            self._feed.close()
        elif self._source is SpeechSource.MESSAGE_ID and self._message_id and self.text:
            audio = self._message_audio(self._message_id, self.text)
            self._player.play_stream(audio, service, self._tts_timeout_s)
        else:
            # No speech came with the answer (the app's auto-play is off, or no message
            # id): say it sentence by sentence after all.
            for sentence in self._held:
                self._player.say(sentence)
        self._held = []
        self._player.finish()
        return self.text

    def interrupt(self) -> None:
        """Silence now (a barge-in); the caller then cancels `run`."""
        self._player.interrupt()

    def _sentence(self, sentence: str) -> None:
        self._on_sentence(sentence)
        if self._source is SpeechSource.SENTENCES:
            self._player.say(sentence)
        else:
            self._held.append(sentence)

    def _stream_audio(self, delta: Delta) -> None:
        if self._source is not SpeechSource.ANSWER_STREAM:
            return
        # Only audio opens the feed: a stream whose speech ends (or fails) before any
        # arrived leaves the sentences to be said.
        if self._feed is None and delta.audio:
            self._feed = _AudioFeed()
            service = service_name(self._stages.completion)
            self._player.play_stream(self._feed.chunks(), service, self._stream_timeout_s)
        if self._feed is not None and delta.audio:
            self._feed.put(AudioChunk(delta.audio, delta.audio_type or "audio/mpeg"))
        if self._feed is not None and delta.audio_done:
            self._feed.close()

    def _replace(self, answer: str) -> None:
        """Moderation replaced the answer: stop saying the old one at once, say this one."""
        old, self._player = self._player, self._new_player()
        old.interrupt()  # cancel every stage of the old speech, then flush: as a barge-in
        if self._feed is not None:
            self._feed.close()
        # The stream's own audio and the stored message speak the old answer: from here on
        # the replacement goes sentence by sentence to synthesis, and later audio is ignored.
        self._source = SpeechSource.SENTENCES
        self._feed = None
        self._held = []
        self._chunker = self._new_chunker()
        self.text = answer
        self._on_replaced(answer)
        for sentence in self._chunker.feed(answer):
            self._sentence(sentence)

    async def _message_audio(self, message_id: str, answer: str) -> AsyncIterator[AudioChunk]:
        """Dify speaks its stored answer; an unknown id (`200 null`) falls back to the text."""
        assert self._stages.message_tts is not None
        try:
            async for chunk in self._stages.message_tts.stream(answer, message_id=message_id):
                yield chunk
            return
        except ServiceError as exc:
            if exc.code != "no_audio":
                raise
            log.warning("Dify has no audio for message %s; speaking the text", message_id)
        async for chunk in self._stages.tts.stream(answer):
            yield chunk
