"""The state machine: every allowed transition, and illegal ones refused."""

from __future__ import annotations

import logging
from collections import deque

import pytest

from assistant.events import EventBus, StateChanged, Subscription
from assistant.states import (
    STRICT_ENV,
    TRANSITIONS,
    IllegalTransition,
    State,
    StateMachine,
    allowed,
)

ILLEGAL = [
    # (idle | listening | muted) -> speaking is an announcement between turns: allowed.
    (State.IDLE, State.THINKING),
    (State.IDLE, State.TRANSCRIBING),
    (State.MUTED, State.TRANSCRIBING),
    (State.LISTENING, State.THINKING),
    (State.TRANSCRIBING, State.SPEAKING),
    (State.SPEAKING, State.THINKING),
    (State.SPEAKING, State.TRANSCRIBING),
    (State.ERROR, State.SPEAKING),
    (State.ERROR, State.TRANSCRIBING),
]


def _path_to(target: State) -> list[State]:
    """The shortest run of allowed transitions from idle (the start) to `target`."""
    paths: dict[State, list[State]] = {State.IDLE: []}
    queue = deque([State.IDLE])
    while queue:
        here = queue.popleft()
        for source, dest in TRANSITIONS:
            if source is here and dest not in paths:
                paths[dest] = [*paths[here], dest]
                queue.append(dest)
    assert target in paths, f"{target} cannot be reached from idle"
    return paths[target]


def _drain(sub: Subscription) -> list[StateChanged]:
    out = []
    while (event := sub.get_nowait()) is not None:
        assert isinstance(event, StateChanged)
        out.append(event)
    return out


def _machine_in(state: State, strict: bool = True) -> tuple[StateMachine, Subscription]:
    bus = EventBus()
    machine = StateMachine(bus, strict=strict)
    for step in _path_to(state):
        assert machine.to(step)
    assert machine.state is state
    return machine, bus.subscribe()


@pytest.mark.parametrize(("source", "target"), list(TRANSITIONS))
def test_every_allowed_transition_is_made_and_published(source: State, target: State) -> None:
    machine, seen = _machine_in(source)
    machine.turn = 3
    assert machine.to(target) is True
    assert machine.state is target
    assert [(e.state, e.turn) for e in _drain(seen)] == [(target.value, 3)]


def test_every_state_is_reachable_and_can_get_back_to_waiting() -> None:
    for state in State:
        _path_to(state)
        # From every state the loop can get back to where it waits for a question.
        assert allowed(state, State.LISTENING) or allowed(state, State.IDLE), state


def test_every_transition_says_why() -> None:
    assert all(isinstance(why, str) and why for why in TRANSITIONS.values())
    assert all(source is not target for source, target in TRANSITIONS)


def test_staying_put_is_no_change_and_publishes_nothing() -> None:
    machine, seen = _machine_in(State.SPEAKING)
    assert machine.to(State.SPEAKING) is False
    assert _drain(seen) == []


@pytest.mark.parametrize(("source", "target"), ILLEGAL)
def test_illegal_transition_raises_when_strict(source: State, target: State) -> None:
    assert not allowed(source, target)
    machine, seen = _machine_in(source)
    with pytest.raises(IllegalTransition, match=f"{source} -> {target}"):
        machine.to(target)
    assert machine.state is source
    assert _drain(seen) == []


@pytest.mark.parametrize(("source", "target"), ILLEGAL[:3])
def test_illegal_transition_is_logged_and_refused_in_production(
    source: State, target: State, caplog: pytest.LogCaptureFixture
) -> None:
    machine, seen = _machine_in(source, strict=False)
    with caplog.at_level(logging.ERROR, logger="assistant.states"):
        assert machine.to(target) is False
    assert machine.state is source
    assert _drain(seen) == []
    assert f"illegal state change {source} -> {target}" in caplog.text


def test_strictness_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STRICT_ENV, "1")
    assert StateMachine(EventBus()).strict is True
    monkeypatch.delenv(STRICT_ENV)
    assert StateMachine(EventBus()).strict is False
