"""`voice-assistant voices --provider dify|openai|convai`: what can be used as `voice`."""

from __future__ import annotations

import asyncio

from assistant.providers.base import ServiceError
from assistant.settings import Settings

LIST_TIMEOUT_S = 15.0


async def _dify_lines(settings: Settings) -> list[str]:
    from assistant.providers.dify import DifyClient

    client = DifyClient(settings.dify, settings.http, settings.assistant.user)
    try:
        params = await client.parameters()
    finally:
        await client.aclose()
    tts = params.get("text_to_speech") or {}
    return [
        "Dify speaks with the voice configured in the app (set [dify] voice to override):",
        f"  voice:     {tts.get('voice') or '(provider default)'}",
        f"  language:  {tts.get('language') or '-'}",
        f"  enabled:   {tts.get('enabled')}",
        f'  auto-play: {tts.get("autoPlay")}  ("enabled" is needed for tts = "dify-stream")',
    ]


def _openai_lines(settings: Settings) -> list[str]:
    from assistant.providers.openai import openai_voices

    lines = [f"Voices of {settings.openai.tts_model} (set [openai] voice):"]
    lines += [f"  {name}" for name in openai_voices(settings.openai)]
    lines.append("A custom voice: set [openai] voice_id to its id.")
    return lines


async def _convai_lines(settings: Settings) -> list[str]:
    from assistant.providers.convai import ConvaiClient, convai_voices

    client = ConvaiClient(settings.convai, settings.http)
    try:
        voices = await convai_voices(client)
    finally:
        await client.aclose()
    lines = ["Convai voices (set [convai] voice to a voice_value):"]
    for voice in voices:
        langs = ",".join(voice.lang_codes)
        lines.append(
            f"  {voice.voice_value:<52} {voice.name} ({voice.section}, {voice.gender}, {langs})"
        )
    return lines


async def _lines(provider: str, settings: Settings) -> list[str]:
    async with asyncio.timeout(LIST_TIMEOUT_S):
        if provider == "dify":
            return await _dify_lines(settings)
        if provider == "openai":
            return _openai_lines(settings)
        return await _convai_lines(settings)


def list_voices(provider: str, settings: Settings) -> int:
    """Print the voices; exit status 1 when the service cannot be asked."""
    try:
        lines = asyncio.run(_lines(provider, settings))
    except ServiceError as exc:
        print(f"cannot list {provider} voices: {exc}")
        return 1
    except TimeoutError:
        print(f"cannot list {provider} voices: no answer within {LIST_TIMEOUT_S:g} s")
        return 1
    print("\n".join(lines))
    return 0
