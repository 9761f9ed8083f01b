"""`voice-assistant run | demo | doctor | devices | voices | devserver`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from importlib import metadata
from pathlib import Path

from assistant.config import ConfigError, load_config, missing_key_error
from assistant.lifecycle import EXIT_INTERRUPTED
from assistant.logs import setup_logging
from assistant.ports import DeviceWedged
from assistant.settings import DevServerSettings, Settings
from assistant.watchdog import EXIT_HUNG

EXIT_FAILED = 1
"""`doctor`: a check failed; `voices`, `devices`: the answer could not be had."""
EXIT_CONFIG = 2
"""A setting that cannot work, a missing key, an app that does not fit: nothing will work
until it is fixed, so systemd does not restart (RestartPreventExitStatus=2)."""
EXIT_RESTART = 75
"""The audio library hung (assistant.ports.DeviceWedged): only a new process can use the
devices again, which systemd's Restart= starts (EX_TEMPFAIL)."""
DEFAULT_CONFIG = Path("config/assistant.toml")

EXIT_CODES = f"""\
exit status:
  0    done (doctor: every check passed); `systemctl stop` ends a run with 0 too
  {EXIT_FAILED}    doctor: a check failed; voices, devices: the service or device could not tell
  {EXIT_CONFIG}    configuration error: a bad or unknown setting, no API key, a key file others
       can read, or a Dify app that does not fit the settings (the message says which)
  {EXIT_HUNG}   the watchdog found the event loop stuck (systemd restarts the service)
  {EXIT_RESTART}   the audio library hung: only a new process can use the devices (restarted)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
"""


def _version() -> str:
    try:
        return metadata.version("voice-assistant")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voice-assistant",
        description=__doc__,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    # -v after the command too; SUPPRESS keeps the subcommand from resetting an earlier -v.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help,
            parents=[common],
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    run = command("run", "listen and answer (real devices unless files are given)")
    run.add_argument("--config", type=Path, help=f"TOML config (default: {DEFAULT_CONFIG} if any)")
    run.add_argument("--mic-wav", type=Path, help="use this WAV as the microphone, in real time")
    run.add_argument("--speaker-wav", type=Path, help="write the speaker to this WAV")
    run.add_argument("--events-jsonl", type=Path, help="write every event as a JSON line (0600)")
    run.add_argument(
        "--dev-server",
        action="store_true",
        help="answer from the bundled dev server instead of Dify (no key needed)",
    )

    demo = command("demo", "run against the bundled dev server (files if there is no sound card)")
    demo.add_argument("--config", type=Path)
    demo.add_argument("--out", type=Path, default=Path("demo-out"), help="where file mode writes")

    doctor = command("doctor", "check the config, devices, buttons and services, one verdict each")
    doctor.add_argument("--config", type=Path)
    doctor.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("devices", "microphone", "tone", "buttons", "services"),
        help="leave a check out (repeatable)",
    )

    devices = command("devices", "list the microphones and speakers; mark the configured ones")
    devices.add_argument("--config", type=Path)

    voices = command("voices", "list the voices a TTS provider offers")
    voices.add_argument("--provider", choices=("dify", "openai", "convai"), required=True)
    voices.add_argument("--config", type=Path)

    dev = command("devserver", "serve the Dify-compatible dev server")
    # The same defaults as the dev server `demo` and `run --dev-server` start.
    dev_defaults = DevServerSettings()
    dev.add_argument("--host", default=dev_defaults.host)
    dev.add_argument("--port", type=int, default=dev_defaults.port)
    dev.add_argument(
        "--control",
        action="store_true",
        help="also serve the unauthenticated /_dev/ levers (latency, faults, request log)",
    )
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


def _devserver(args: argparse.Namespace) -> int:
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
        control=args.control,
    )
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.app import RunOptions, run_assistant
    from assistant.lifecycle import run_until_stopped

    if args.mic_wav is not None and not args.mic_wav.is_file():
        raise ConfigError("--mic-wav", str(args.mic_wav), "no such file")
    options = RunOptions(
        args.mic_wav, args.speaker_wav, args.events_jsonl, dev_server=args.dev_server
    )
    return asyncio.run(run_until_stopped(run_assistant(settings, options)))


def _with_settings(args: argparse.Namespace, settings: Settings) -> int:
    """The commands that need the configuration loaded."""
    if args.command == "run":
        return _run(args, settings)
    if args.command == "voices":
        from assistant.voices import list_voices

        if args.provider == "dify" and (missing := missing_key_error(settings)) is not None:
            raise missing
        return list_voices(args.provider, settings)
    if args.command == "devices":
        from assistant.doctor_devices import print_devices

        return print_devices(settings)
    from assistant.demo import run_demo

    run_demo(settings, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "devserver":
        return _devserver(args)
    try:
        if args.command == "doctor":
            # The configuration is the doctor's first check, not a reason to stop.
            from assistant.doctor_devices import run_doctor

            return run_doctor(_config_path(args.config), frozenset(args.skip))
        return _with_settings(args, load_config(_config_path(args.config)))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except DeviceWedged as exc:
        logging.getLogger("assistant").critical("%s; exiting for a restart", exc)
        return EXIT_RESTART
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
