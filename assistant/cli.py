"""`voice-assistant run | demo | voices | devserver`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from assistant.config import ConfigError, load_config
from assistant.ports import DeviceWedged
from assistant.settings import DevServerSettings

EXIT_CONFIG = 2
EXIT_RESTART = 75
"""The audio library hung (assistant.ports.DeviceWedged): only a new process can use the
devices again, which systemd's Restart= starts (EX_TEMPFAIL)."""
DEFAULT_CONFIG = Path("config/assistant.toml")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-assistant", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="listen and answer (real devices unless files are given)")
    run.add_argument("--config", type=Path, help=f"TOML config (default: {DEFAULT_CONFIG} if any)")
    run.add_argument("--mic-wav", type=Path, help="use this WAV as the microphone, in real time")
    run.add_argument("--speaker-wav", type=Path, help="write the speaker to this WAV")
    run.add_argument("--events-jsonl", type=Path, help="write every event as a JSON line")

    demo = commands.add_parser(
        "demo", help="run against the bundled dev server (files if there is no sound card)"
    )
    demo.add_argument("--config", type=Path)
    demo.add_argument("--out", type=Path, default=Path("demo-out"), help="where file mode writes")

    voices = commands.add_parser("voices", help="list the voices a TTS provider offers")
    voices.add_argument("--provider", choices=("dify", "openai", "convai"), required=True)
    voices.add_argument("--config", type=Path)

    dev = commands.add_parser("devserver", help="serve the Dify-compatible dev server")
    # The same defaults as the dev server the assistant starts when it has no key.
    dev_defaults = DevServerSettings()
    dev.add_argument("--host", default=dev_defaults.host)
    dev.add_argument("--port", type=int, default=dev_defaults.port)
    dev.add_argument("--stt-latency-ms", type=int, default=0, help="speech-to-text delay")
    dev.add_argument("--first-token-ms", type=int, default=0, help="delay before the answer")
    dev.add_argument("--tokens-per-second", type=float, default=0, help="0 = unpaced")
    dev.add_argument("--tts-first-byte-ms", type=int, default=0, help="delay before audio")
    dev.add_argument(
        "--tts-speed", type=float, default=0, help="audio sent at N x real time; 0 = at once"
    )
    dev.add_argument(
        "--reply-sentences", type=int, default=0, help="answer length in sentences; 0 = all"
    )
    return parser


def _config_path(arg: Path | None) -> Path | None:
    if arg is not None:
        return arg
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request URL at INFO; a turn's own summary line is enough.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    if args.command == "devserver":
        from assistant.devserver import DevServerOptions, serve_forever

        serve_forever(
            args.host,
            args.port,
            DevServerOptions(
                stt_latency_ms=args.stt_latency_ms,
                first_token_ms=args.first_token_ms,
                tokens_per_second=args.tokens_per_second,
                tts_first_byte_ms=args.tts_first_byte_ms,
                tts_speed=args.tts_speed,
                reply_sentences=args.reply_sentences,
            ),
        )
        return 0

    try:
        settings = load_config(_config_path(args.config))
        if args.command == "voices":
            from assistant.app import local_server_if_needed
            from assistant.voices import list_voices

            return list_voices(args.provider, settings, local_server_if_needed)
        if args.command == "run":
            from assistant.app import RunOptions, run_assistant

            for path in (args.mic_wav,):
                if path is not None and not path.is_file():
                    raise ConfigError("--mic-wav", str(path), "no such file")
            options = RunOptions(args.mic_wav, args.speaker_wav, args.events_jsonl)
            asyncio.run(run_assistant(settings, options))
        else:
            from assistant.demo import run_demo

            run_demo(settings, args.out)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except DeviceWedged as exc:
        logging.getLogger("assistant").critical("%s; exiting for a restart", exc)
        return EXIT_RESTART
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
