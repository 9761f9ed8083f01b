"""Is there a sound card at all? Asked once, before choosing devices or files."""

from __future__ import annotations

import contextlib
import os


def audio_devices_available() -> bool:
    """True when PortAudio sees at least one input and one output device."""
    import pyaudio

    # PortAudio prints its ALSA/JACK probing noise on fd 2; for a yes/no probe it is noise.
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            pa = pyaudio.PyAudio()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    try:
        with contextlib.suppress(OSError):
            pa.get_default_input_device_info()
            pa.get_default_output_device_info()
            return True
        return False
    finally:
        pa.terminate()
