"""The catalogue of events: one class per kind, documented, matching the README's table."""

from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import re
from pathlib import Path

import pytest

from assistant.audio.wav import AudioFormatError
from assistant.events import (
    CATALOGUE,
    BargeIn,
    Error,
    Event,
    EventBus,
    JsonlWriter,
    Marks,
    ServiceErrorEvent,
)
from assistant.failures import describe_failure
from assistant.marks import MARK_ORDER
from assistant.ports import DeviceError
from assistant.providers.base import ServiceError

ROOT = Path(__file__).resolve().parent.parent
TABLE = re.compile(r"<!-- events-table: start -->\n(.*?)<!-- events-table: end -->", re.S)


def _fields(cls: type[Event]) -> list[tuple[str, bool]]:
    """(name, optional) of each wire field, in order."""
    return [(f.name, f.default is None) for f in dataclasses.fields(cls) if f.name != "t"]


def _readme_table() -> dict[str, list[tuple[str, bool]]]:
    match = TABLE.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert match, "README.md has no events table between its markers"
    rows: dict[str, list[tuple[str, bool]]] = {}
    for line in match.group(1).splitlines()[2:]:
        kind_cell, fields_cell = (cell.strip() for cell in line.strip("|").split("|")[:2])
        kind = kind_cell.strip("`")
        assert kind not in rows, f"{kind} twice in the README's table"
        rows[kind] = [
            (name.strip().strip("`?"), name.strip().endswith("?"))
            for name in fields_cell.split(",")
            if name.strip()
        ]
    return rows


def test_readme_table_and_catalogue_agree() -> None:
    table = _readme_table()
    assert list(table) == list(CATALOGUE), "kinds differ, or are in another order"
    for kind, cls in CATALOGUE.items():
        assert table[kind] == _fields(cls), f"fields of {kind!r} differ (`?` = optional)"


@pytest.mark.parametrize("cls", list(CATALOGUE.values()), ids=list(CATALOGUE))
def test_every_event_is_frozen_and_every_field_documented(cls: type[Event]) -> None:
    assert cls.kind and CATALOGUE[cls.kind] is cls
    assert cls.__doc__ and cls.__doc__.strip()
    params = dataclasses.fields(cls)
    event = cls(**{f.name: _sample(f) for f in params if f.name != "t"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, params[-1].name, None)
    # Each field is documented in the class body (a docstring after it) or named in the
    # class docstring: read from the source.
    documented = _documented_fields(cls)
    obvious = {"turn", "text", "service", "stage", "code", "message", "status"}
    missing = [f.name for f in params if f.name not in documented | obvious | {"t"}]
    marks = set(MARK_ORDER) if cls is Marks else set()
    assert not [m for m in missing if m not in marks], f"{cls.kind}: undocumented {missing}"


def _sample(field: dataclasses.Field[object]) -> object:
    return None if field.default is None else 1


def _documented_fields(cls: type[Event]) -> set[str]:
    source = (ROOT / "assistant" / "events.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            names = set()
            body = node.body
            for here, after in itertools.pairwise(body):
                if (
                    isinstance(here, ast.AnnAssign)
                    and isinstance(here.target, ast.Name)
                    and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)
                ):
                    names.add(here.target.id)
            return names
    raise AssertionError(f"{cls.__name__} not found in events.py")


def test_marks_has_a_field_for_every_mark() -> None:
    names = {name for name, _ in _fields(Marks)}
    assert set(MARK_ORDER) <= names


def test_one_error_shape_for_every_source() -> None:
    wire = {name for name, _ in _fields(Error)}
    failures = [
        ServiceError("dify", "stt", "http_error", "bad", status=500),
        AudioFormatError("not audio"),
        DeviceError("gone"),
        TimeoutError(),
        RuntimeError("bug"),
        ExceptionGroup("wrapped", [ServiceError("openai", "tts", "timeout", "slow")]),
    ]
    for exc in failures:
        described = describe_failure(exc)
        event = Error(turn=1, spoken="It failed.", **described)
        assert {"stage", "code", "message"} <= set(event.data) <= wire
    assert set(ServiceError("convai", "tts", "x", "y").as_event()) <= wire
    retry = ServiceErrorEvent(next="retry", **ServiceError("dify", "tts", "x", "y").as_event())
    assert retry.data == {
        "service": "dify",
        "stage": "tts",
        "code": "x",
        "message": "y",
        "next": "retry",
    }


def test_json_lines_keep_their_field_names(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    writer = JsonlWriter(path)
    bus = EventBus()
    bus.add_listener(writer)
    bus.publish(Error(stage="device", code="device_error", message="gone", t=1.5))
    bus.publish(BargeIn(by="button", t=2.25))
    bus.publish(Marks(turn=2, speech_end=0.0, first_audio=612.4, speculations_used=1, t=3.0))
    writer.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {"t": 1.5, "kind": "error", "stage": "device", "code": "device_error", "message": "gone"},
        {"t": 2.25, "kind": "barge_in", "by": "button"},
        {
            "t": 3.0,
            "kind": "marks",
            "turn": 2,
            "speech_end": 0.0,
            "first_audio": 612.4,
            "speculations_used": 1,
        },
    ]


def test_nothing_publishes_a_bare_string() -> None:
    """Every `publish(...)` in the appliance hands over a catalogue object."""
    offenders = []
    for path in sorted((ROOT / "assistant").rglob("*.py")):
        if "devserver" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "publish"
                and (node.keywords or any(isinstance(a, ast.Constant) for a in node.args))
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
