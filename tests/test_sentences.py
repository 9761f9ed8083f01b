"""SentenceChunker: streamed deltas → speakable sentences."""

from __future__ import annotations

import random

import pytest

from assistant.settings import SpeechSettings
from assistant.text.sentences import SentenceChunker


def chunk(text: str, min_chars: int = 12, max_chars: int = 400) -> list[str]:
    chunker = SentenceChunker(min_chars, max_chars)
    return chunker.feed(text) + chunker.flush()


def chunk_pieces(pieces: list[str], min_chars: int = 12, max_chars: int = 400) -> list[str]:
    chunker = SentenceChunker(min_chars, max_chars)
    out: list[str] = []
    for piece in pieces:
        out += chunker.feed(piece)
    return out + chunker.flush()


CASES: list[tuple[str, list[str]]] = [
    ("Hello there. How are you today?", ["Hello there.", "How are you today?"]),
    (
        "Stop! Wait a moment, please! Really?! Yes.",
        ["Stop! Wait a moment, please!", "Really?! Yes."],
    ),
    ("Yes. It is.", ["Yes. It is."]),
    ("Pi is about 3.14159 and e is 2.718.", ["Pi is about 3.14159 and e is 2.718."]),
    ("It costs $5.99. That is cheap.", ["It costs $5.99.", "That is cheap."]),
    ("Dr. Smith and Mr. Jones met Mrs. Brown.", ["Dr. Smith and Mr. Jones met Mrs. Brown."]),
    ("I met Prof. Xavier at St. Mary's church.", ["I met Prof. Xavier at St. Mary's church."]),
    (
        "Fruit, e.g. apples, is good. Veg, i.e. greens, too.",
        ["Fruit, e.g. apples, is good.", "Veg, i.e. greens, too."],
    ),
    ("Cats vs. dogs is an old debate.", ["Cats vs. dogs is an old debate."]),
    ("It is room No. 5 on the left.", ["It is room No. 5 on the left."]),
    ("Is that a yes? No. It is not.", ["Is that a yes?", "No. It is not."]),
    ("J. R. R. Tolkien wrote The Hobbit.", ["J. R. R. Tolkien wrote The Hobbit."]),
    ("Bring pens, paper, etc. to the exam.", ["Bring pens, paper, etc. to the exam."]),
    (
        "Bring pens, paper, etc. Then sit down quietly.",
        ["Bring pens, paper, etc.", "Then sit down quietly."],
    ),
    ("We landed at 5 p.m. on Monday.", ["We landed at 5 p.m. on Monday."]),
    ("Well... I suppose so. Fine.", ["Well... I suppose so.", "Fine."]),
    ("Well... I suppose so.", ["Well... I suppose so."]),
    ("So… maybe we could try it. Sure!", ["So… maybe we could try it.", "Sure!"]),
    (
        "See https://example.com/a.b?x=1 for details. Thanks a lot!",
        ["See https://example.com/a.b?x=1 for details.", "Thanks a lot!"],
    ),
    (
        "Mail jane.doe@example.org today. Bye for now.",
        ["Mail jane.doe@example.org today.", "Bye for now."],
    ),
    (
        "Version v1.2.3 fixed it. Upgrade from 1.2 now.",
        ["Version v1.2.3 fixed it.", "Upgrade from 1.2 now."],
    ),
    ('He said "Stop right there." Then he left.', ['He said "Stop right there."', "Then he left."]),
    ("(This is an aside.) And this is not.", ["(This is an aside.)", "And this is not."]),
    (
        "你好。我是一个语音助手！你今天过得怎么样？",
        ["你好。我是一个语音助手！", "你今天过得怎么样？"],
    ),
    ("「行こう。」と彼は言った。", ["「行こう。」と彼は言った。"]),
    (
        "First line without a stop\nSecond line here",
        ["First line without a stop", "Second line here"],
    ),
    (
        "Paragraph one is here.\n\nParagraph two is here.",
        ["Paragraph one is here.", "Paragraph two is here."],
    ),
    ("   lots   of \t spaces   here.   And more.  ", ["lots of spaces here.", "And more."]),
    ("", []),
    ("   \n\n  ", []),
    ("Ok.", ["Ok."]),
    ("We moved there in 2024. Then it rained.", ["We moved there in 2024.", "Then it rained."]),
    ("**Warning.** Save your work often.", ["Warning. Save your work often."]),
    ("Line one is here.\r\nLine two is here.", ["Line one is here.", "Line two is here."]),
    ("Nice 👍\n👍\n---\nThat is all, folks.", ["Nice 👍. That is all, folks."]),
    ("今天很好。Tomorrow it will rain.", ["今天很好。 Tomorrow it will rain."]),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_cases(text: str, expected: list[str]) -> None:
    assert chunk(text) == expected


MARKDOWN = """# Shopping list

Here is what you need:
- **Milk**, two litres
* `Eggs` (a dozen)
+ Bread
1. Go to the shop.
2. Pay at the till.

> Quoted advice is spoken too.
---
Read [the guide](https://example.com/guide.html) and __enjoy__ the snake_case names.
"""


def test_markdown_is_stripped() -> None:
    assert chunk(MARKDOWN) == [
        "Shopping list",
        "Here is what you need:",
        "Milk, two litres",
        "Eggs (a dozen)",
        "Bread. 1. Go to the shop.",
        "2. Pay at the till.",
        "Quoted advice is spoken too.",
        "Read the guide and enjoy the snake_case names.",
    ]


def test_short_sentences_merge_until_min_chars() -> None:
    assert chunk("Hi. Yes. No way. This is long enough.", min_chars=12) == [
        "Hi. Yes. No way.",
        "This is long enough.",
    ]
    assert chunk("Hi. Yes.", min_chars=0) == ["Hi.", "Yes."]


def test_sentence_released_as_soon_as_following_whitespace_arrives() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("The first sentence is here.") == []
    assert chunker.feed(" ") == ["The first sentence is here."]
    assert chunker.feed("Second") == []
    assert chunker.feed(" one is coming.\n") == ["Second one is coming."]
    assert chunker.flush() == []


def test_decimal_waits_for_the_next_character() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("The answer is about 3.") == []
    assert chunker.feed("14 today, I think") == []
    assert chunker.flush() == ["The answer is about 3.14 today, I think"]


def test_cjk_sentence_released_on_next_character() -> None:
    chunker = SentenceChunker(min_chars=3)
    assert chunker.feed("今天天气很好。") == []
    assert chunker.feed("我") == ["今天天气很好。"]


def test_flush_emits_remainder_and_resets() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("Short. And an unfinished") == []
    assert chunker.flush() == ["Short. And an unfinished"]
    assert chunker.flush() == []
    assert chunker.feed("# Title\n") == []
    assert chunker.flush() == ["Title."]


def test_long_text_cut_at_clause_boundary() -> None:
    text = "word " * 10 + "and then, " + "more " * 30
    out = chunk(text, max_chars=80)
    assert out[0] == ("word " * 10 + "and then,").strip()
    assert all(len(s) <= 80 for s in out)
    assert " ".join(out).split() == text.split()


def test_long_text_cut_at_whitespace_or_hard() -> None:
    out = chunk("alpha " * 50, max_chars=40)
    assert all(len(s) <= 40 for s in out)
    assert " ".join(out).split() == ["alpha"] * 50
    assert chunk("x" * 100, max_chars=40) == ["x" * 40, "x" * 40, "x" * 20]


def test_long_text_cut_at_dash() -> None:
    out = chunk("a" * 30 + "—" + "b" * 30, min_chars=1, max_chars=40)
    assert out == ["a" * 30 + "—", "b" * 30]


def test_max_chars_cut_starts_speech_before_the_sentence_ends() -> None:
    chunker = SentenceChunker(max_chars=60)
    out = chunker.feed("This clause goes on, and on, and on, and on, and on, and on, and")
    assert out == ["This clause goes on, and on, and on, and on, and on, and on,"]


def test_from_settings() -> None:
    chunker = SentenceChunker.from_settings(
        SpeechSettings(min_sentence_chars=3, max_sentence_chars=50)
    )
    assert (chunker.min_chars, chunker.max_chars) == (3, 50)


def test_bad_limits_rejected() -> None:
    with pytest.raises(ValueError):
        SentenceChunker(min_chars=50, max_chars=10)


PARAGRAPH = (
    "Sure! Here's the plan for today.\n\n"
    "## Morning\n"
    "- Meet Dr. Smith at 9.30 a.m. on Baker St. near No. 221.\n"
    "- Check v2.0.1 of the app, e.g. the **login** page… it was slow.\n\n"
    'Then, at noon, we eat. J. R. R. Tolkien said "Not all those who wander are lost." '
    "Visit https://example.com/docs?page=2. 你好。我们走吧！好的。 "
    "Finally, a long sentence that keeps going with commas, semicolons; and colons: "
    "long enough that the maximum length rule has to cut it somewhere sensible, "
    "because nobody wants to wait for the whole thing before the speaker starts talking"
    "... Done?! Yes. OK"
)


def test_split_at_every_character_boundary_matches_whole() -> None:
    whole = chunk(PARAGRAPH, max_chars=120)
    assert len(whole) > 8
    for cut in range(len(PARAGRAPH) + 1):
        assert chunk_pieces([PARAGRAPH[:cut], PARAGRAPH[cut:]], max_chars=120) == whole, cut


def test_one_character_at_a_time_matches_whole() -> None:
    whole = chunk(PARAGRAPH, max_chars=120)
    assert chunk_pieces(list(PARAGRAPH), max_chars=120) == whole


def test_random_deltas_match_whole() -> None:
    rng = random.Random(3)
    for max_chars in (40, 120, 400):
        whole = chunk(PARAGRAPH, max_chars=max_chars)
        for _ in range(30):
            cuts = sorted(rng.sample(range(1, len(PARAGRAPH)), 40))
            pieces = [
                PARAGRAPH[a:b] for a, b in zip([0, *cuts], [*cuts, len(PARAGRAPH)], strict=True)
            ]
            assert chunk_pieces(pieces, max_chars=max_chars) == whole


def test_paragraph_sentences_are_sensible() -> None:
    out = chunk(PARAGRAPH, max_chars=120)
    assert out[0] == "Sure! Here's the plan for today."
    assert "Morning. Meet Dr. Smith at 9.30 a.m. on Baker St. near No. 221." in out
    assert "Check v2.0.1 of the app, e.g. the login page… it was slow." in out
    assert 'J. R. R. Tolkien said "Not all those who wander are lost."' in out
    assert "Visit https://example.com/docs?page=2." in out
    assert "你好。我们走吧！好的。 Finally," in out[6]
    assert all(s and s == " ".join(s.split()) for s in out)
    assert all("*" not in s and "#" not in s for s in out)
    assert out[-1].endswith("OK")
