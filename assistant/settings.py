"""Every setting of the assistant, with its default and why, in one place.

Frozen dataclasses: built once at start by `assistant.config.load_config`,
then shared read-only by every stage. `config/assistant.toml` mirrors this
file key for key.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import NoReturn


class Trigger(StrEnum):
    HANDS_FREE = "hands_free"
    """VAD alone opens and closes each utterance (lab bench, kiosk)."""
    PUSH_TO_TALK = "push_to_talk"
    """Audio is captured while the talk button is held; the release ends it."""
    TOGGLE = "toggle"
    """A tap of the talk button starts listening; the VAD's end of speech or a second tap
    ends the question; a tap during an answer interrupts it and listens."""
    WAKE_WORD = "wake_word"
    """The device listens for a wake word (`[wake]`) on the device; the word opens a
    listening window and the VAD catches and ends the question, as in hands-free."""

    @property
    def uses_button(self) -> bool:
        """Whether a talk button starts questions (else the VAD or the wake word does)."""
        return self in (Trigger.PUSH_TO_TALK, Trigger.TOGGLE)


class Speculate(StrEnum):
    OFF = "off"
    """Speech-to-text starts when the hangover has confirmed the end of the question."""
    STT = "stt"
    """The utterance so far is transcribed during the hangover; the answer starts once the
    hangover confirms the end."""
    STT_COMPLETION = "stt+completion"
    """The answer is also requested during the hangover; nothing plays until the end is
    confirmed, and a question that goes on stops it (Text Generator apps only)."""


class Secret:
    """An API key that never shows itself: not in a repr, a log line, an f-string or JSON.

    Deliberately not a `str`: a `str` subclass hands its value to `json.dumps`, `+`,
    slicing and every C function that takes a string. Here each of those fails or shows
    `***`; `reveal()` is the one way to the value.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        if not isinstance(value, str):
            raise TypeError("a Secret holds a str")
        self._value = value

    def reveal(self) -> str:
        """The real value: only for the one header that needs it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    def __str__(self) -> str:
        return "***" if self._value else ""

    def __format__(self, spec: str) -> str:
        return str(self)

    def __copy__(self) -> Secret:
        return self  # immutable

    def __deepcopy__(self, memo: object) -> Secret:
        return self

    def __reduce__(self) -> NoReturn:
        # Pickling would write the value out wherever the pickle goes.
        raise TypeError("a Secret is not pickled")


@dataclass(frozen=True, slots=True)
class AssistantSettings:
    trigger: Trigger = Trigger.HANDS_FREE
    """How a question starts and ends: `hands_free`, `push_to_talk`, `toggle` or
    `wake_word` (assistant.trigger)."""
    user: str = "voice-assistant"
    """The `user` sent to Dify with every request; scopes messages and stop calls."""
    language: str = "en"
    """Language of the local fallback voice (espeak-ng voice name)."""
    barge_in_voice: bool = False
    """Hands-free: speech during an answer interrupts it even without echo cancellation
    (with it, `echo.barge_in` already does). Off by default: half-duplex, the assistant's
    own voice from the speaker would interrupt it. (A talk button press always does.)"""
    watchdog_s: float = 15.0
    """Exit (for systemd to restart) when the event loop has not turned for this long; 0 = off."""
    follow_up_s: float = 0.0
    """After an answer has finished playing, listen this long without a button press (with
    the listening earcon); speech then is a new turn of the same conversation. 0 = off."""
    listen_timeout_s: float = 8.0
    """Toggle mode: after a tap with no speech, listening stops after this long."""
    state_dir: str = ""
    """Where small state (the volume) is kept; "" = systemd's StateDirectory, else
    $XDG_STATE_HOME/voice-assistant (~/.local/state/voice-assistant)."""


class EchoMode(StrEnum):
    AUTO = "auto"
    """Cancel the device's own sound when the canceller is installed (it is, with the
    assistant, on x86_64 and aarch64) and the speaker reports what it plays."""
    ON = "on"
    """The same, but a missing canceller stops the start."""
    OFF = "off"
    """Half-duplex: what the microphone hears while the device plays is silenced (the
    sound server already cancels echo, or nothing the speaker plays reaches the mic)."""


@dataclass(frozen=True, slots=True)
class EchoSettings:
    """Echo cancellation: the device hears the user over its own voice."""

    enabled: EchoMode = EchoMode.AUTO
    """`auto`, `on` or `off` (EchoMode)."""
    barge_in: bool = True
    """With echo cancellation active, the user's speech over an answer interrupts it
    (hands-free), and so does the wake word (wake word mode)."""
    barge_in_min_speech_ms: int = 300
    """Speech over an answer must last this long to end it. Any voice pauses the answer
    at once; a cough, a door, a word shorter than this lets it resume."""
    resume_after_s: float = 2.0
    """A pause for a sound that did not become speech lasts at most this long; then the
    answer resumes where it paused."""
    reference_delay_ms: int = 0
    """Added to the devices' reported latencies when what was played is lined up with
    what is heard: for a sound path that hides its latency (a Bluetooth or network
    speaker). The canceller finds the room's own delay by itself."""


@dataclass(frozen=True, slots=True)
class WakeSettings:
    """The wake word (`assistant.trigger = "wake_word"`), heard on the device."""

    words: tuple[str, ...] = ("okay_nabu",)
    """The wake words listened for, several at once: the models pymicro-wakeword ships,
    `okay_nabu`, `hey_jarvis`, `hey_mycroft`, `alexa`."""
    model_files: tuple[str, ...] = ()
    """Your own microWakeWord models: the paths of their `.json` manifests, each with the
    `.tflite` it names beside it. Listened for as well as `words`."""
    probability_cutoff: float = 0.0
    """How sure a model must be that it heard its word: 0 = each model's own tuned cutoff
    (0.85 to 0.97); lower hears the word more readily (and falsely more often), higher
    less. 0.5 to 0.99."""
    refractory_s: float = 2.0
    """Once heard, the word is not heard again for this long."""
    listen_s: float = 5.0
    """After the word, how long the device waits for the question to start; silence
    till then goes back to waiting for the word."""


@dataclass(frozen=True, slots=True)
class AudioSettings:
    input_device: str = ""
    """Microphone: a PyAudio device index or a substring of its name; "" = system default."""
    output_device: str = ""
    """Speaker: a PyAudio device index or a substring of its name; "" = system default."""
    input_rate: int = 0
    """Capture rate in Hz; 0 = the first of 16000, 48000, 44100 the device accepts."""
    output_rate: int = 0
    """Playback rate in Hz; 0 = the first of 48000, 44100, 24000, 16000 the device accepts."""
    period_ms: int = 20
    """Device period: the callback granularity, and the bound on how fast a flush is heard."""
    playback_buffer_s: float = 2.0
    """Ring buffer ahead of the speaker; writers wait when it is full."""
    device_timeout_s: float = 2.0
    """A device that delivers nothing for this long is treated as gone."""
    echo_tail_ms: int = 200
    """Half-duplex: what the microphone captures while the device plays, and this long after
    (the speaker's latency plus the room's echo), is replaced by silence: the device never
    hears, answers or uploads its own sounds."""
    speaker_wav_rate: int = 24_000
    """Rate of the WAV file written in place of the speaker (`run --speaker-wav`, the demo
    without a sound card) when `output_rate` is 0: 24 kHz is what OpenAI-style voices
    deliver, so most answers are written without resampling."""


@dataclass(frozen=True, slots=True)
class VadSettings:
    aggressiveness: int = 2
    """webrtcvad aggressiveness 0 (keeps most) to 3 (drops most non-speech)."""
    frame_ms: int = 20
    """webrtcvad frame length: 10, 20 or 30 ms."""
    preroll_ms: int = 300
    """Audio kept from before speech starts, so the first syllable is not clipped."""
    hangover_ms: int = 500
    """Silence that ends an utterance. Each ms here is a ms added to every answer."""
    start_ms: int = 60
    """Voiced audio needed to open an utterance (filters single-frame clicks)."""
    min_speech_ms: int = 200
    """Utterances with less voiced audio than this are dropped (clicks, coughs)."""
    max_utterance_s: float = 30.0
    """Hard cap on one utterance; 30 s of 16 kHz s16 is 0.96 MB, far below upload limits."""
    speculate: Speculate = Speculate.STT
    """Start work during the hangover: `off`, `stt` or `stt+completion`. A pause of
    `speculate_after_ms` sends the utterance so far to speech-to-text at once; speech
    resuming discards that work. Costs one extra upload per such pause in mid-question."""
    speculate_after_ms: int = 200
    """Silence after which the speculative work starts; it starts only when this is
    below `hangover_ms`."""


@dataclass(frozen=True, slots=True)
class ButtonSettings:
    pin: int = 17
    """BCM number of the talk button (wired to ground; the internal pull-up is used)."""
    bounce_ms: int = 20
    """Contact debounce time."""
    long_press_s: float = 2.0
    """A press held this long is a long press (reserved for conversation reset)."""
    pin_factory: str = ""
    """gpiozero pin factory, shared by every button and LED: "" = gpiozero's choice
    ($GPIOZERO_PIN_FACTORY, else the first of lgpio, rpigpio, pigpio, native that loads),
    "lgpio" (every Pi, the Pi 5 too),
    "rpigpio" (RPi.GPIO, or rpi-lgpio on a Pi 5), "pigpio" (needs the pigpiod daemon; not
    on a Pi 5), "native" (no library; not on a Pi 5), "mock" (no real pins: tests, a PC)."""
    cancel_pin: int = -1
    """BCM pin of the cancel button (stops whatever is happening: an answer, a question
    being heard); wired to ground like the talk button. -1 = not fitted."""
    mute_pin: int = -1
    """BCM pin of the mute button (turns listening off, or on again); -1 = not fitted."""
    volume_up_pin: int = -1
    """BCM pin of the volume-up button (one `volume.step_db` per press); -1 = not fitted."""
    volume_down_pin: int = -1
    """BCM pin of the volume-down button; -1 = not fitted."""


class LedKind(StrEnum):
    NONE = "none"
    """No status LED."""
    LED = "led"
    """One LED, on or off (gpiozero LED): a pulse shows as a slow blink."""
    PWM = "pwm"
    """One dimmable LED (gpiozero PWMLED): pulses fade in and out, `brightness` applies."""
    RGB = "rgb"
    """An RGB LED (gpiozero RGBLED, three PWM channels): each state in its colour."""


@dataclass(frozen=True, slots=True)
class LedSettings:
    kind: LedKind = LedKind.NONE
    """The status LED: `none`, `led`, `pwm` or `rgb`."""
    pin: int = -1
    """BCM pin of a `led` or `pwm` LED (through its resistor to ground)."""
    red_pin: int = -1
    """BCM pin of an `rgb` LED's red channel."""
    green_pin: int = -1
    """BCM pin of its green channel."""
    blue_pin: int = -1
    """BCM pin of its blue channel."""
    active_high: bool = True
    """True: a high pin lights it (LED to ground; an RGB LED with a common cathode).
    False: a low pin does (LED to 3.3 V; common anode)."""
    brightness: float = 1.0
    """How bright "on" is, 0.01 to 1 (`pwm` and `rgb`; a `led` is fully on)."""
    error_hold_s: float = 3.0
    """An error blinks at least this long, even when the assistant has moved on."""
    listening_colour: str = "#0000ff"
    """`rgb`: the colour of listening, as #rrggbb."""
    thinking_colour: str = "#00ffff"
    """`rgb`: the colour of transcribing and thinking (pulsing)."""
    speaking_colour: str = "#00ff00"
    """`rgb`: the colour of speaking."""
    error_colour: str = "#ff0000"
    """`rgb`: the colour of an error (blinking fast)."""
    muted_colour: str = "#ff8000"
    """`rgb`: the colour of muted (a short flash every 2 s)."""

    def pin_keys(self) -> tuple[str, ...]:
        """The keys of the pins this kind of LED uses."""
        if self.kind is LedKind.RGB:
            return ("red_pin", "green_pin", "blue_pin")
        return () if self.kind is LedKind.NONE else ("pin",)

    def colour(self, name: str) -> tuple[float, float, float]:
        """`name`'s colour (listening, thinking, ...) as red, green, blue from 0 to 1."""
        text: str = getattr(self, f"{name}_colour")
        r, g, b = (int(text[i : i + 2], 16) / 255 for i in (1, 3, 5))
        return (r, g, b)


@dataclass(frozen=True, slots=True)
class EarconSettings:
    listening: bool = True
    """A rising blip when listening starts at a press, a tap or the follow-up window
    (never in hands-free listening, which has no such moment)."""
    done: bool = False
    """A short falling blip when an answer has finished playing."""
    thinking: bool = True
    """A soft blip, repeated, while the answer's first audio is late."""
    thinking_cue_after_ms: int = 800
    """The thinking cue starts when no answer is heard this long after the end of speech."""
    error: bool = True
    """Two falling tones before the spoken explanation of a failure."""
    tick: bool = True
    """A tick at the new level when the volume is stepped."""
    listening_file: str = ""
    """A WAV file to play instead of the built-in listening earcon ("" = built in)."""
    done_file: str = ""
    """A WAV file instead of the built-in done earcon."""
    thinking_file: str = ""
    """A WAV file instead of the built-in thinking blip."""
    error_file: str = ""
    """A WAV file instead of the built-in error tones."""
    tick_file: str = ""
    """A WAV file instead of the built-in volume tick."""

    def file_for(self, earcon: str) -> Path | None:
        """The configured WAV file of `earcon` (listening, done, ...), if any."""
        name = getattr(self, f"{earcon}_file")
        return Path(name).expanduser() if name else None


@dataclass(frozen=True, slots=True)
class VolumeSettings:
    default_db: float = 0.0
    """Output level until the volume buttons change it (then the saved level is used)."""
    step_db: float = 3.0
    """One press of a volume button."""
    min_db: float = -30.0
    """The quietest level the buttons reach."""
    max_db: float = 6.0
    """The loudest; above 0 dB loud peaks are clipped rather than wrapped."""


@dataclass(frozen=True, slots=True)
class HttpSettings:
    connect_timeout_s: float = 5.0
    """TCP + TLS connect limit for every service."""
    read_timeout_s: float = 30.0
    """Longest gap between two received bytes (Dify pings every 10 s on streams)."""
    stt_timeout_s: float = 30.0
    """Whole speech-to-text request, upload included."""
    completion_timeout_s: float = 120.0
    """Whole completion stream."""
    tts_timeout_s: float = 30.0
    """Whole synthesis of one sentence."""
    tts_first_audio_timeout_s: float = 8.0
    """Longest wait for one voice's first audio of a sentence; then the next voice in the
    chain (in the end the local one) says it, within what is left of `tts_timeout_s`."""
    warm_up_timeout_s: float = 5.0
    """Longest wait for each service's connections to open, at start and when speech
    starts after a quiet spell; a slower service is left to connect on its first turn."""
    retries: int = 1
    """Extra attempts of a request that is safe to repeat (an utterance's upload, a
    sentence's synthesis before it plays) after a transient failure: connection lost or
    refused, 429, 5xx. Then the fallback provider is asked. Completions are never retried."""
    retry_backoff_s: float = 0.2
    """Wait before the first retry; doubles per retry, half of it random (jitter)."""
    max_retry_after_s: float = 3.0
    """A 429's Retry-After up to this long is waited out; a longer one goes to the fallback."""


@dataclass(frozen=True, slots=True)
class DifySettings:
    base_url: str = "https://api.dify.ai/v1"
    """API base: Dify's cloud, or your self-hosted `/v1` (https unless it is on this host)."""
    api_key: Secret = field(default_factory=lambda: Secret(""))
    """App key (`app-...`). Prefer the DIFY_API_KEY variable, `api_key_file` or the systemd
    credential `dify-api-key`: `voice-assistant run` will not start without one."""
    api_key_file: str = ""
    """File holding the key; must be readable by its owner only."""
    connect_timeout_s: float = 0.0
    """This service's connect limit; 0 = `http.connect_timeout_s`."""
    read_timeout_s: float = 0.0
    """This service's longest gap between two received bytes; 0 = `http.read_timeout_s`."""
    response_mode: str = "streaming"
    """`streaming` (SSE, speech starts early) or `blocking` (one JSON answer)."""
    inputs: dict[str, str] = field(default_factory=dict)
    """Values for the app's `user_input_form` variables."""
    question_variable: str = "auto"
    """The input variable the transcript is sent in, besides `query` (newer Text Generator
    apps read their question from `inputs`, and ignore the legacy `query`). `auto`: `query`
    if the app's form has it, else its only required text variable that `inputs` does not
    give, else none; "" = `query` only. Cut to the variable's `max_length` if longer."""
    voice: str = ""
    """TTS voice for /text-to-audio; "" = the app's configured voice."""
    app: str = "completion"
    """App type: `completion` (Text Generator, /completion-messages) or `chat`
    (Chatbot/Agent/Chatflow, /chat-messages with conversation memory)."""
    conversation_idle_s: float = 300.0
    """Chat apps: after this long without a turn the next question starts a new conversation."""
    use_message_id: bool = False
    """With tts provider `dify`: synthesise each sentence via /text-to-audio with the
    answer's `message_id` instead of the text (Dify then speaks its stored answer)."""


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    stt: str = "dify"
    """Speech-to-text: `dify` (/audio-to-text) or `openai` (/audio/transcriptions)."""
    stt_fallback: tuple[str, ...] = ()
    """Tried in order when `stt` fails (unreachable, 5xx, 429...)."""
    tts: str = "dify"
    """Text-to-speech: `dify` (/text-to-audio), `dify-stream` (the completion stream's own
    `tts_message` audio), `openai` (/audio/speech) or `convai` (/tts/)."""
    tts_fallback: tuple[str, ...] = ()
    """Tried in order when `tts` fails; the local espeak-ng voice is always the last resort."""


@dataclass(frozen=True, slots=True)
class OpenAISettings:
    base_url: str = "https://api.openai.com/v1"
    """API base; any OpenAI-compatible server works (speaches, LocalAI, Kokoro-FastAPI)."""
    api_key: Secret = field(default_factory=lambda: Secret(""))
    """Prefer the OPENAI_API_KEY variable or `api_key_file`."""
    api_key_file: str = ""
    """File holding the key; must be readable by its owner only."""
    connect_timeout_s: float = 0.0
    """This service's connect limit; 0 = `http.connect_timeout_s`."""
    read_timeout_s: float = 0.0
    """This service's longest gap between two received bytes; 0 = `http.read_timeout_s`."""
    stt_model: str = "whisper-1"
    """whisper-1, gpt-4o-transcribe or gpt-4o-mini-transcribe (any name on other servers)."""
    language: str = ""
    """ISO-639-1 language of the speech, e.g. `en`; "" = detect."""
    prompt: str = ""
    """Text to guide the transcription style or vocabulary."""
    temperature: float = 0.0
    """Transcription sampling temperature, 0 to 1."""
    tts_model: str = "tts-1"
    """tts-1, tts-1-hd or gpt-4o-mini-tts (any name on other servers)."""
    voice: str = "alloy"
    """One of the built-in voices (tts-1 models accept 9 of the 13)."""
    voice_id: str = ""
    """A custom voice id; when set it is sent as `{"id": ...}` instead of `voice`."""
    instructions: str = ""
    """How to speak (gpt-4o-mini-tts only; never sent to tts-1 models)."""
    response_format: str = "pcm"
    """mp3, opus, aac, flac, wav or pcm; pcm (24 kHz s16le) starts playing soonest."""
    speed: float = 1.0
    """0.25 to 4."""


@dataclass(frozen=True, slots=True)
class ConvaiSettings:
    base_url: str = "https://api.convai.com"
    """API base (the TTS endpoint is `{base_url}/tts/`)."""
    api_key: Secret = field(default_factory=lambda: Secret(""))
    """Prefer the CONVAI_API_KEY variable or `api_key_file`."""
    api_key_file: str = ""
    """File holding the key; must be readable by its owner only."""
    connect_timeout_s: float = 0.0
    """This service's connect limit; 0 = `http.connect_timeout_s`."""
    read_timeout_s: float = 0.0
    """This service's longest gap between two received bytes; 0 = `http.read_timeout_s`."""
    voice: str = "fable_OpenAi_c4d30a32-bcaf-4048-b7b0-0f2bb293205a"
    """A `voice_value` from `voice-assistant voices --provider convai`."""
    encoding: str = "wav"
    """wav (every voice) or mp3 (some voices only)."""
    filename: str = ""
    """Optional `filename` sent with each request."""


@dataclass(frozen=True, slots=True)
class SpeechSettings:
    min_sentence_chars: int = 12
    """Shorter sentences are merged with the next, so TTS is not called per word."""
    max_sentence_chars: int = 400
    """Longer runs are cut at a clause or word boundary so speech starts early."""
    tts_prefetch: int = 2
    """Sentences synthesised ahead of the one playing."""


@dataclass(frozen=True, slots=True)
class DevServerSettings:
    host: str = "127.0.0.1"
    """Where the bundled dev server listens, for `demo` and `run --dev-server` (never by
    itself: without a key `run` stops instead)."""
    port: int = 8750
    """Its port; 0 = any free port."""


@dataclass(frozen=True, slots=True)
class EventsSettings:
    enabled: bool = True
    """Serve the live event stream and its commands (`ws://host:port/events`) and the
    kiosk page (`http://host:port/`)."""
    host: str = "127.0.0.1"
    """Where it listens. Loopback (the default) is this device only; any other address
    (e.g. "0.0.0.0" for a kiosk on the LAN) needs `token`."""
    port: int = 8765
    """Its port; 0 = any free port."""
    token: Secret = field(default_factory=lambda: Secret(""))
    """What clients must present (`Authorization: Bearer <token>` or `?token=<token>`);
    required off loopback, at least 16 characters. Prefer the
    VOICE_ASSISTANT_EVENTS_TOKEN variable; never logged."""


@dataclass(frozen=True, slots=True)
class Settings:
    assistant: AssistantSettings = field(default_factory=AssistantSettings)
    wake: WakeSettings = field(default_factory=WakeSettings)
    echo: EchoSettings = field(default_factory=EchoSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    button: ButtonSettings = field(default_factory=ButtonSettings)
    leds: LedSettings = field(default_factory=LedSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    dify: DifySettings = field(default_factory=DifySettings)
    providers: ProviderSettings = field(default_factory=ProviderSettings)
    openai: OpenAISettings = field(default_factory=OpenAISettings)
    convai: ConvaiSettings = field(default_factory=ConvaiSettings)
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    earcons: EarconSettings = field(default_factory=EarconSettings)
    volume: VolumeSettings = field(default_factory=VolumeSettings)
    devserver: DevServerSettings = field(default_factory=DevServerSettings)
    events: EventsSettings = field(default_factory=EventsSettings)
