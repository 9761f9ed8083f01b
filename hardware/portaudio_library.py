"""Which PortAudio library PyAudio runs on: the fixed build in the venv, when there is one.

Debian's PortAudio (19.6 in bookworm, 19.7 in trixie) can spin forever in its
ALSA error paths when a stream's device goes away mid-stream: a USB microphone
unplugged, PulseAudio or PipeWire restarted. The stream's thread then takes a
core, floods stderr, and can never be joined, so the stream can never be
closed (hardware/portaudio/alsa-error-paths.patch has the details).
`manage.sh` builds PortAudio with that fixed into `<venv>/portaudio`.

PyAudio's extension asks the dynamic linker for `libportaudio.so.2`; a library
with that soname already loaded is the one it gets. So loading the fixed build
before the first `import pyaudio` is all it takes, and nothing changes for
PyAudio or for the code above it.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys
from pathlib import Path

_LOG = logging.getLogger(__name__)

LIBRARY_ENV = "VOICE_ASSISTANT_PORTAUDIO"
"""Path of the libportaudio.so.2 to load instead of the venv's fixed build; "system" for the
system's own."""

FIXED_BUILD = Path(sys.prefix, "portaudio", "lib", "libportaudio.so.2")
"""Where `hardware/portaudio/build.sh` puts the fixed library by default."""

loaded_path: Path | None = None
"""The library loaded by `load_fixed_portaudio`; None while PyAudio gets the system's."""


def load_fixed_portaudio() -> None:
    """Load the fixed PortAudio before PyAudio does; the system's copy if it is missing."""
    global loaded_path
    if "pyaudio._portaudio" in sys.modules or loaded_path is not None:
        return  # too late to choose, or already chosen
    chosen = os.environ.get(LIBRARY_ENV, "").strip()
    if chosen == "system":
        return
    path = Path(chosen) if chosen else FIXED_BUILD
    if not path.is_file():
        if chosen:
            _LOG.warning("%s=%s: no such file; using the system's PortAudio", LIBRARY_ENV, path)
        return
    try:
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        _LOG.warning("cannot load %s (%s); using the system's PortAudio", path, exc)
        return
    loaded_path = path


@functools.cache
def warn_if_unfixed() -> None:
    """One warning per process when the devices run on a PortAudio without the fix."""
    if loaded_path is None:
        _LOG.warning(
            "using the system's PortAudio: a device lost mid-stream can hang its audio "
            "thread; `./manage.sh run` builds the fixed one into %s",
            FIXED_BUILD.parent.parent,
        )
