"""Log lines for a terminal or for journald, and what of the events is logged.

Under systemd (stderr is the journal stream systemd named in JOURNAL_STREAM) each line
starts with its syslog priority (`<3>` for an error), which journald turns into the
entry's priority, and carries no timestamp of its own: the journal has one.

What people say and what the assistant answers is logged only at DEBUG: on a device with
a persistent journal every question would otherwise land on its SD card. Each turn's one
INFO line is its latency breakdown (assistant.turn).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from assistant.events import (
    Answer,
    Event,
    Sentence,
    StateChanged,
    Transcript,
    UtteranceDropped,
)

log = logging.getLogger(__name__)

TERMINAL_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"

_PRIORITIES = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
"""Python level (at least) -> syslog priority; below INFO is 7 (debug)."""


def syslog_priority(levelno: int) -> int:
    return next((priority for level, priority in _PRIORITIES if levelno >= level), 7)


class JournalFormatter(logging.Formatter):
    """`<priority>name: message`; every line of a multi-line record (a traceback) gets
    the prefix, since journald reads each line as an entry of its own."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def under_journal(stream: TextIO = sys.stderr, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether `stream` is the journal stream systemd connected (not just inherited the
    variable: a child whose stderr was redirected must not talk journald to a file)."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def setup_logging(verbose: bool) -> None:
    """The root logger: INFO (DEBUG with -v) on stderr, formatted for where stderr goes."""
    handler = logging.StreamHandler(sys.stderr)
    if under_journal():
        handler.setFormatter(JournalFormatter(JOURNAL_FORMAT))
    else:
        handler.setFormatter(logging.Formatter(TERMINAL_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # httpx logs every request URL at INFO; a turn's own summary line is enough.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def log_event(event: Event) -> None:
    """A bus listener: the words of a turn, at DEBUG only."""
    if isinstance(event, Transcript | Sentence | Answer):
        log.debug("%s (turn %d): %s", event.kind, event.turn, event.text)
    elif isinstance(event, UtteranceDropped):
        log.debug("utterance dropped: %s (%d ms of speech)", event.reason, event.speech_ms)
    elif isinstance(event, StateChanged):
        log.debug("state: %s", event.state)
