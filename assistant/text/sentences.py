"""Streamed text deltas → speakable sentences, each released the moment it is complete.

Rules, in order of precedence:

* A sentence ends at a line break, or at a run of `. ! ? …` (optionally
  followed by closing quotes, brackets or markdown emphasis) that is followed by
  whitespace. CJK `。！？` end a sentence without needing whitespace. The end is
  only decided once the character after it has arrived (or at `flush`), so
  "3." waiting for "14" is never cut.
* A single `.` is not an end after a known abbreviation (Dr. Mr. e.g. vs. ...),
  after a single capital initial (J. R. R.), or after a list number at the start
  of a line ("1. Buy milk"). "No." is not an end before a digit ("No. 5").
  "etc.", dotted acronyms (U.S., p.m.) and ellipses end a sentence only when the
  next word starts with a capital letter or a quote.
* Dots inside URLs, e-mail addresses, version numbers and decimals are never
  followed by whitespace, so they never end a sentence.
* A sentence shorter than `min_chars` is held and joined to the next one, so
  "Yes." is not a TTS call of its own; `flush` releases whatever is left. A
  held line without closing punctuation (a heading, a list item) gets a full
  stop so the joined text still pauses there. Chinese and Japanese pieces are
  joined to each other without a space.
* A run longer than `max_chars` (raw characters) with no end is cut at its
  last clause mark (, ; : followed by a space, or a dash), else at its last
  space, else hard at `max_chars`, so speech can start on very long sentences.

Markdown that should not be spoken is removed, deliberately simply: `#`
headings, `-`/`*`/`+`/`•` bullets and `>` quotes at the start of a line,
`*`/`**` emphasis, backticks, `_`/`__` emphasis at word edges (snake_case
survives), and `[text](url)` links become their text. Numbered list markers
are kept ("1. Buy milk" reads well). Whitespace is collapsed, and a piece with
no letter or digit in it (a `---` rule, a lone emoji) is not spoken.

The output depends only on the text, never on how it was split into deltas.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Self

from assistant.settings import SpeechSettings

_TERMINALS = frozenset(".!?…。！？")
_CJK_TERMINALS = frozenset("。！？")
_CLOSERS = frozenset("\"'”’»)]}」』）】*_`")
_OPENER_CHARS = "\"'“‘«([{「『（【*_`"
_OPENERS = frozenset(_OPENER_CHARS)
_CLAUSE_MARKS = frozenset(",;:")
_PAUSE_MARKS = _TERMINALS | _CLAUSE_MARKS | frozenset("，；：、")
_DASHES = frozenset("—–")

_ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "cf",
        "fig", "approx", "dept", "mt", "ft", "gen", "gov", "sgt", "capt", "col", "lt",
    }
)  # fmt: skip
_CAPITAL_NEXT_ABBREVIATIONS = frozenset({"etc", "al", "inc", "ltd", "co"})
_ACRONYM = re.compile(r"(?:[a-z]\.)+[a-z]")

_LINE_MARKER = re.compile(r"\s*(?:#{1,6}|[-*+•]|>)(?:\s+|$)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"\*+|`+|(?<![^\W_])_+|_+(?![^\W_])")

_WAIT = -1
_DEFAULTS = SpeechSettings()
"""The `[speech]` defaults, for a chunker built without settings."""


class SentenceChunker:
    """Feed text deltas; get back the sentences each delta completed."""

    def __init__(
        self,
        min_chars: int = _DEFAULTS.min_sentence_chars,
        max_chars: int = _DEFAULTS.max_sentence_chars,
    ) -> None:
        if min_chars < 0 or max_chars < 2 or min_chars > max_chars:
            raise ValueError(f"bad sentence limits: min {min_chars}, max {max_chars}")
        self.min_chars = min_chars
        self.max_chars = max_chars
        self._buf = ""
        self._pending = ""
        self._line_start = True

    @classmethod
    def from_settings(cls, settings: SpeechSettings) -> Self:
        return cls(settings.min_sentence_chars, settings.max_sentence_chars)

    def feed(self, text: str) -> list[str]:
        """Add a delta; return the sentences now complete (often none)."""
        self._buf += text.replace("\r", "\n")
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """End of the answer: return everything still held, then start afresh."""
        out = self._drain(final=True)
        if self._pending:
            out.append(self._pending)
        self._buf = ""
        self._pending = ""
        self._line_start = True
        return out

    def _drain(self, final: bool) -> list[str]:
        out: list[str] = []
        while self._buf:
            end = self._find_end(final)
            if end == _WAIT:
                break
            piece, self._buf = self._buf[:end], self._buf[end:]
            at_line_start = self._line_start
            tail = piece.rstrip(" \t")
            if tail:
                self._line_start = tail.endswith("\n")
            sentence = _clean(piece, at_line_start)
            if not sentence:
                continue
            if self._pending:
                sentence = _join(self._pending, sentence)
            if len(sentence) < self.min_chars:
                # A short heading or list item is about to run into the next
                # piece; a full stop keeps the pause its line break implied.
                if piece.endswith("\n") and sentence[-1] not in _PAUSE_MARKS:
                    sentence += "。" if _is_cjk(sentence[-1]) else "."
                self._pending = sentence
            else:
                self._pending = ""
                out.append(sentence)
        return out

    def _find_end(self, final: bool) -> int:
        """Index just past the first sentence in the buffer, or _WAIT for more text."""
        buf = self._buf
        n = len(buf)
        i = 0
        while i < n and i < self.max_chars:
            ch = buf[i]
            if ch == "\n":
                return i + 1
            if ch not in _TERMINALS:
                i += 1
                continue
            j = i + 1
            while j < n and buf[j] in _TERMINALS:
                j += 1
            k = j
            while k < n and buf[k] in _CLOSERS:
                k += 1
            if k > self.max_chars:
                break
            decision = self._is_end(i, j, k, final)
            if decision is None:
                return _WAIT
            if decision:
                return k
            i = k
        if n > self.max_chars:
            return self._overlong_cut()
        return n if final else _WAIT

    def _is_end(self, i: int, j: int, k: int, final: bool) -> bool | None:
        """Whether the terminal run buf[i:j] (closers up to k) ends a sentence.

        None means the answer depends on text that has not arrived yet.
        """
        buf = self._buf
        if k == len(buf):
            return True if final else None
        run = buf[i:j]
        if any(c in _CJK_TERMINALS for c in run):
            return True
        if not buf[k].isspace():
            return False
        if "?" in run or "!" in run:
            return True
        if run == ".":
            word_start = max(buf.rfind(" ", 0, i), buf.rfind("\n", 0, i), buf.rfind("\t", 0, i))
            word_start += 1
            word = buf[word_start:i].lstrip(_OPENER_CHARS)
            lower = word.lower()
            if lower in _ABBREVIATIONS:
                return False
            if len(word) == 1 and word.isupper():
                return False
            if word.isdigit() and self._starts_line(word_start):
                return False
            if lower == "no":
                return _next_word_test(buf, k, final, lambda c: not c.isdigit())
            if lower in _CAPITAL_NEXT_ABBREVIATIONS or _ACRONYM.fullmatch(lower):
                return _next_word_test(buf, k, final, _starts_sentence)
            return True
        # An ellipsis may trail off mid-sentence ("so... maybe") or end one.
        return _next_word_test(buf, k, final, _starts_sentence)

    def _starts_line(self, index: int) -> bool:
        before = self._buf[:index].rstrip(" \t")
        return before.endswith("\n") if before else self._line_start

    def _overlong_cut(self) -> int:
        buf = self._buf
        limit = self.max_chars
        for p in range(limit, 0, -1):
            prev = buf[p - 1]
            if prev in _DASHES or (prev in _CLAUSE_MARKS and buf[p].isspace()):
                return p
        for p in range(limit, 0, -1):
            if buf[p].isspace() and buf[:p].strip():
                return p
        return limit


def _next_word_test(buf: str, k: int, final: bool, test: Callable[[str], bool]) -> bool | None:
    """Apply `test` to the first non-space character after index k (whitespace at k)."""
    m = k
    n = len(buf)
    while m < n and buf[m].isspace():
        if buf[m] == "\n":
            return True
        m += 1
    if m == n:
        return True if final else None
    return test(buf[m])


def _starts_sentence(ch: str) -> bool:
    return ch.isupper() or ch in _OPENERS


def _is_cjk(ch: str) -> bool:
    """Chinese/Japanese characters and punctuation, which are written without spaces."""
    return "\u2e80" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef"


def _join(held: str, sentence: str) -> str:
    if _is_cjk(held[-1]) and _is_cjk(sentence[0]):
        return held + sentence
    return f"{held} {sentence}"


def _clean(piece: str, at_line_start: bool) -> str:
    """Spoken form of a raw piece: markdown removed, whitespace collapsed."""
    if at_line_start:
        piece = _LINE_MARKER.sub("", piece, count=1)
    piece = _LINK.sub(r"\1", piece)
    piece = _EMPHASIS.sub("", piece)
    text = " ".join(piece.split())
    if not any(c.isalnum() for c in text):
        return ""
    return text
