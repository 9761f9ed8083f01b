"""An answer stream's own speech: `tts_message` events, then `tts_message_end`.

Dify's auto-play synthesises the answer as it is written and sends what is ready between
the text events; whatever is left is drained after the text (`message_end`, and a
Chatflow's `workflow_finished`), then `tts_message_end`. By default the dev server sends
all of it after the text; with `tts_interleave` it sends each piece once the text it
speaks has been sent, sentence by sentence, and the last sentence's speech after the text
(it is only complete when the text is).

Each event carries base64 of TTS_PIECE_BYTES of one MP3: not a multiple of the frame size,
so frames are split across events as a real provider's chunks split them, and each
piece's base64 ends in padding (joining the strings instead of the decoded bytes breaks).
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from assistant.aio import cancel_and_wait
from assistant.devserver.options import DevServerOptions
from assistant.devserver.synth import Mp3Audio, mp3_for

if TYPE_CHECKING:
    from assistant.devserver.answers import Answer

TTS_PIECE_BYTES = 1000
"""MP3 bytes per `tts_message`."""
TTS_AUDIO_TYPE = "audio/mpeg"
"""`audio_type` of every `tts_message` (newer Dify sends the provider's MIME type)."""
_SENTENCE_END = re.compile(r"[.!?](?=\s)")

Send = Callable[[dict[str, Any]], Awaitable[None]]


def spoken_text_length(sent: str) -> int:
    """How much of `sent` (the text written so far) has been synthesised: up to the end of
    its last complete sentence that more text follows."""
    ends = [m.end() for m in _SENTENCE_END.finditer(sent)]
    return ends[-1] if ends else 0


class StreamSpeech:
    """The speech of one answer, sent through `send` as the stream goes."""

    def __init__(self, answer: Answer, options: Callable[[], DevServerOptions], send: Send):
        self._answer = answer
        self._options = options
        self._send = send
        self._interleave = options().tts_interleave
        self._audio: asyncio.Task[Mp3Audio] | None = None
        if self._interleave:
            # Synthesised while the text streams, as Dify's TTS publisher does.
            self._audio = asyncio.create_task(mp3_for(answer.reply, options().voice))
        self._sent_bytes = 0
        self._first_piece_at: float | None = None
        self.pieces = 0
        self.pieces_before_end = 0
        """Pieces sent before `message_end` (only with `tts_interleave`)."""

    async def during_text(self) -> None:
        """Send the speech of the text written so far, if it is synthesised yet."""
        if self._audio is None or not self._audio.done():
            return
        audio = self._audio.result()
        covered = spoken_text_length(self._answer.answer) / max(1, len(self._answer.reply))
        due = int(len(audio.data) * covered) // TTS_PIECE_BYTES * TTS_PIECE_BYTES
        while self._sent_bytes < due:
            await self._piece(audio.data)
        self.pieces_before_end = self.pieces

    async def after_text(self, stop: asyncio.Event) -> dict[str, Any]:
        """Send the rest, paced by `tts_speed` like /text-to-audio, then `tts_message_end`;
        a stop ends the audio early. Returns details for the request log."""
        if self._audio is not None:
            audio = await self._audio
        else:
            audio = await mp3_for(self._answer.answer, self._options().voice)
        loop = asyncio.get_running_loop()
        total = len(audio.data)
        while self._sent_bytes < total and not stop.is_set():
            speed = self._options().tts_speed
            if self._first_piece_at is not None and speed > 0:
                # Byte offset -> playback time of the audio up to there, sped up.
                due = self._first_piece_at + self._sent_bytes / total * audio.duration / speed
                await asyncio.sleep(due - loop.time())
            if stop.is_set():
                break
            await self._piece(audio.data)
        end = self._answer.base("tts_message_end")
        end["audio"] = ""
        await self._send(end)
        return {
            "tts_pieces": self.pieces,
            "tts_pieces_before_end": self.pieces_before_end,
            "audio_bytes": total,
            "audio_duration_s": round(audio.duration, 3),
        }

    async def _piece(self, data: bytes) -> None:
        piece = data[self._sent_bytes : self._sent_bytes + TTS_PIECE_BYTES]
        event = self._answer.base("tts_message")
        event.update(audio=base64.b64encode(piece).decode("ascii"), audio_type=TTS_AUDIO_TYPE)
        if self._first_piece_at is None:
            self._first_piece_at = asyncio.get_running_loop().time()
        await self._send(event)
        self._sent_bytes += len(piece)
        self.pieces += 1

    async def aclose(self) -> None:
        """Stop a synthesis nobody will send (a stopped answer, a client gone)."""
        if self._audio is not None:
            await cancel_and_wait(self._audio)
