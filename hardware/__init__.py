"""Device adapters: the only package that imports pyaudio or gpiozero.

Each adapter turns a library's own threads and callbacks into asyncio queues
and events, and each has a file-backed twin with the same interface.
"""

from hardware.portaudio_library import load_fixed_portaudio

# Before any adapter imports pyaudio: PyAudio then links the fixed PortAudio.
load_fixed_portaudio()
