"""The output volume: a software gain in steps, kept across restarts.

Everything the device plays (answers, earcons, spoken errors) is scaled by `apply_gain`
on its way to the speaker (assistant.audio.output_sink), clipped instead of wrapped
around when a gain above 0 dB pushes a sample past full scale. The level is a whole
number of steps of `step_db`; it is written to a small JSON file under the state
directory only when it changes (never per turn: SD cards wear out).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

STATE_FILE = "volume.json"


def state_dir(configured: str) -> Path:
    """Where the assistant keeps its state: `configured`, else systemd's StateDirectory
    ($STATE_DIRECTORY), else $XDG_STATE_HOME/voice-assistant (~/.local/state/...)."""
    if configured:
        return Path(configured).expanduser()
    if systemd := os.environ.get("STATE_DIRECTORY"):
        return Path(systemd.split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "voice-assistant"


class Volume:
    """The level in dB, moved in steps between `min_db` and `max_db`."""

    def __init__(
        self, *, default_db: float, step_db: float, min_db: float, max_db: float, path: Path | None
    ) -> None:
        """`path`: the state file (None: nothing is kept)."""
        self.step_db = step_db
        self.min_db = min_db
        self.max_db = max_db
        self._path = path
        self.db = self._clamp(self._load(default_db))

    @property
    def gain(self) -> float:
        return float(10 ** (self.db / 20))

    def step(self, steps: int) -> bool:
        """Move by `steps`; True if the level changed (then it is saved)."""
        return self.set_db(self.db + steps * self.step_db)

    def set_db(self, db: float) -> bool:
        """Set the level (clamped to the range); True if it changed (then it is saved)."""
        new = self._clamp(db)
        if new == self.db:
            return False
        self.db = new
        self._save()
        return True

    def _clamp(self, db: float) -> float:
        return round(min(self.max_db, max(self.min_db, db)), 2)

    def _load(self, default_db: float) -> float:
        if self._path is None or not self._path.exists():
            return default_db
        try:
            value = json.loads(self._path.read_text(encoding="utf-8"))["db"]
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            raise ValueError(f"db is {type(value).__name__}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the saved volume in %s (%s)", self._path, exc)
            return default_db

    def _save(self) -> None:
        if self._path is None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # Written aside and renamed: a power cut leaves the old file or the new one.
            with tempfile.NamedTemporaryFile(
                "w", dir=self._path.parent, prefix=".volume-", delete=False, encoding="utf-8"
            ) as tmp:
                json.dump({"db": self.db}, tmp)
            os.replace(tmp.name, self._path)
        except OSError as exc:
            log.warning("cannot save the volume to %s: %s", self._path, exc)


def apply_gain(samples: np.ndarray, gain: float) -> np.ndarray:
    """int16 samples scaled by `gain`, clipped to full scale (never wrapped)."""
    if gain == 1.0:
        return samples
    scaled = np.asarray(samples, dtype=np.float32) * gain
    return np.clip(np.rint(scaled), -32768, 32767).astype(np.int16)
