"""The layers import one way only (shared/DESIGN.md, "Boundaries").

- `hardware/` implements the ports: from the project it imports only `hardware.*` and
  `assistant.ports`.
- The core (`assistant/` but the wiring: app.py, cli.py, demo.py, doctor_devices.py) never
  imports `hardware`, not even inside a function, and never imports the wiring (which does).
- `assistant/providers/` knows nothing of the loop, the turn or speech output.
- `assistant.devserver` is imported only by itself and the wiring.

Every import is read with `ast`: module level, inside functions, under TYPE_CHECKING, and
relative ones resolved. Then, in fresh interpreters, importing the core must load no
audio library at all.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = frozenset({"assistant", "hardware", "bench", "tests"})
"""Top-level names that are this project's own (everything else is a library)."""
WIRING = frozenset(
    {
        "assistant/app.py",
        "assistant/cli.py",
        "assistant/demo.py",
        # `doctor` and `devices` open the microphone, speaker and buttons to check them.
        "assistant/doctor_devices.py",
    }
)
"""Where settings become devices: the only core files that may import `hardware`."""
ENTRY_POINT = "assistant/__main__.py"
"""`python -m assistant`: it runs the CLI, so it may import the wiring."""
LOOP_MODULES = (
    "assistant.loop",
    "assistant.turn",
    "assistant.speech_out",
    "assistant.speculation",
    "assistant.devices",
    "assistant.app",
    "assistant.states",
)
"""What the providers must not know about: they serve the loop, not the other way round."""
DEVSERVER_USERS = WIRING
"""Besides the dev server itself: the `devserver` command, the demo and the no-key path."""
AUDIO_LIBRARIES = ("libportaudio", "libasound")


def _pyav_libs() -> Path:
    """PyAV's wheel brings its own FFmpeg, whose libavdevice links a private libasound:
    loading the PyAV decoders maps it, though nothing calls it. They are imported on first
    use (a compressed speech body), and no build of PyAV without libavdevice is packaged."""
    spec = importlib.util.find_spec("av")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0] + ".libs")


@dataclass(frozen=True, slots=True)
class Import:
    line: int
    target: str
    """The dotted name imported: `from a.b import c` imports `a.b.c` (a module or a name in
    `a.b`; either way `a.b` is loaded)."""
    statement: str


def _module_name(path: str) -> str:
    parts = path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _dynamic_target(node: ast.Call) -> str | None:
    """`importlib.import_module("x")` and `__import__("x")` with a literal name."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def imports_of(path: str, source: str) -> Iterator[Import]:
    """Every import in `source`, the file at `path` (relative to the project root)."""
    module = _module_name(path)
    package = module.split(".") if path.endswith("__init__.py") else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name, ast.unparse(node))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            for alias in node.names:
                target = origin if alias.name == "*" else f"{origin}.{alias.name}"
                yield Import(node.lineno, target, ast.unparse(node))
        elif isinstance(node, ast.Call) and (target := _dynamic_target(node)) is not None:
            yield Import(node.lineno, target, ast.unparse(node))


def _within(target: str, *modules: str) -> bool:
    return any(target == m or target.startswith(m + ".") for m in modules)


def _why_forbidden(path: str, target: str) -> str | None:
    """The rule `path` importing `target` breaks, or None."""
    if target.split(".")[0] not in PROJECT:
        return None
    if path.startswith("hardware/"):
        if not _within(target, "hardware", "assistant.ports"):
            return "hardware imports only hardware.* and assistant.ports from the project"
        return None
    if not path.startswith("assistant/"):
        return None
    core = path not in WIRING
    if core and _within(target, "hardware"):
        return "only the wiring (app.py, cli.py, demo.py, doctor_devices.py) imports hardware"
    wiring_modules = tuple(_module_name(w) for w in WIRING)
    if core and path != ENTRY_POINT and _within(target, *wiring_modules):
        return "the core does not import the wiring (which imports hardware)"
    if path.startswith("assistant/providers/") and _within(target, *LOOP_MODULES):
        return "providers import nothing from the loop, the turn or speech output"
    if (
        _within(target, "assistant.devserver")
        and not path.startswith("assistant/devserver/")
        and path not in DEVSERVER_USERS
    ):
        return "only the wiring imports the dev server"
    return None


def violations(path: str, source: str) -> list[str]:
    """Every forbidden import in `source`, as `path:line: statement: rule`."""
    found = []
    for imp in imports_of(path, source):
        why = _why_forbidden(path, imp.target)
        if why is not None:
            found.append(f"{path}:{imp.line}: {imp.statement}: {why}")
    return found


def _project_files() -> list[Path]:
    return sorted(
        p
        for package in ("assistant", "hardware")
        for p in (ROOT / package).rglob("*.py")
        if ".venv" not in p.parts
    )


def test_every_import_goes_the_allowed_way() -> None:
    files = _project_files()
    assert len(files) > 50, "the walk found too few modules: is ROOT right?"
    found = []
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        found += violations(relative, path.read_text(encoding="utf-8"))
    assert found == [], "imports against the layers:\n" + "\n".join(found)


def test_the_checker_sees_every_kind_of_import() -> None:
    """So that the test above cannot pass by not looking."""
    source = "\n".join(
        [
            "from typing import TYPE_CHECKING",
            "import numpy",  # a library: fine anywhere
            "from assistant.ports import AudioBlock",  # fine anywhere
            "if TYPE_CHECKING:",
            "    from hardware.buttons import TalkButton",  # line 5
            "def f():",
            "    import hardware.speaker",  # line 7
            "    from ..loop import VoiceLoop",  # line 8: relative, resolved
            "    from assistant import app",  # line 9: a submodule by name
            "    importlib.import_module('assistant.devserver')",  # line 10: dynamic
        ]
    )
    assert violations("assistant/audio/thing.py", source) == [
        "assistant/audio/thing.py:5: from hardware.buttons import TalkButton: "
        "only the wiring (app.py, cli.py, demo.py, doctor_devices.py) imports hardware",
        "assistant/audio/thing.py:7: import hardware.speaker: "
        "only the wiring (app.py, cli.py, demo.py, doctor_devices.py) imports hardware",
        "assistant/audio/thing.py:9: from assistant import app: "
        "the core does not import the wiring (which imports hardware)",
        "assistant/audio/thing.py:10: importlib.import_module('assistant.devserver'): "
        "only the wiring imports the dev server",
    ]  # line 8 resolves to assistant.loop, which the core may import
    provider = violations("assistant/providers/thing.py", source)
    assert any(":8: from ..loop import VoiceLoop: providers" in v for v in provider), provider
    assert violations("hardware/thing.py", "from assistant.settings import AudioSettings") == [
        "hardware/thing.py:1: from assistant.settings import AudioSettings: "
        "hardware imports only hardware.* and assistant.ports from the project"
    ]
    assert violations("hardware/thing.py", "from .speaker import Speaker") == []
    assert violations("hardware/thing.py", "from assistant import ports") == []
    # The wiring may: it is where settings become devices.
    assert violations("assistant/app.py", source) == []
    assert violations("assistant/__main__.py", "from assistant.cli import main") == []


# --- what importing actually loads ------------------------------------------------------

_REPORT_LOADED = """
import json, os, sys
paths = {line.split()[-1] for line in open("/proc/self/maps") if "/" in line}
print(json.dumps({
    "libraries": sorted(p for p in paths if os.path.basename(p).startswith(%r)),
    "hardware": sorted(m for m in sys.modules if m == "hardware" or m.startswith("hardware.")),
    "imported": sorted(m for m in sys.modules if m == "assistant" or m.startswith("assistant.")),
}))
"""

_IMPORT_THE_CORE = """
import importlib, pkgutil
SKIP = ("assistant.__main__", "assistant.app", "assistant.cli", "assistant.demo",
        "assistant.doctor_devices")

def walk(package):
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__, package + "."):
        if info.name in SKIP or info.name == "assistant.devserver":
            continue
        if info.ispkg:
            walk(info.name)
        else:
            importlib.import_module(info.name)

walk("assistant")
"""


def _loaded_after(code: str) -> dict[str, list[str]]:
    """What a fresh interpreter has loaded after running `code`."""
    done = subprocess.run(
        [sys.executable, "-c", code + _REPORT_LOADED % (AUDIO_LIBRARIES,)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_the_endpointer_loads_no_audio_library() -> None:
    loaded = _loaded_after("import assistant.audio.endpointer\n")
    assert "assistant.audio.endpointer" in loaded["imported"]
    assert loaded["libraries"] == []  # not even PyAV's libasound
    assert loaded["hardware"] == []


def test_the_whole_core_loads_no_audio_library() -> None:
    loaded = _loaded_after(_IMPORT_THE_CORE)
    # The walk really imported the core, providers and all.
    for module in ("assistant.loop", "assistant.providers.factory", "assistant.ports"):
        assert module in loaded["imported"]
    assert not any(m.startswith("assistant.devserver") for m in loaded["imported"])
    pyav = _pyav_libs()
    assert [p for p in loaded["libraries"] if not Path(p).is_relative_to(pyav)] == []
    assert loaded["hardware"] == []


def test_the_microphone_does_load_portaudio() -> None:
    """The control: the maps check above would see PortAudio if it were loaded."""
    assert importlib.util.find_spec("pyaudio") is not None
    loaded = _loaded_after("import hardware.microphone\n")
    names = [Path(p).name for p in loaded["libraries"] if not Path(p).is_relative_to(_pyav_libs())]
    assert any(name.startswith("libportaudio") for name in names), loaded
    assert any(name.startswith("libasound") for name in names), loaded  # PortAudio's ALSA
    assert "hardware.microphone" in loaded["hardware"]
