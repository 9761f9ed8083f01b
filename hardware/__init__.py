"""Device adapters: the only package that imports pyaudio or gpiozero.

Each adapter turns a library's own threads and callbacks into asyncio queues
and events, and each has a file-backed twin with the same interface.
"""
