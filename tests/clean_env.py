"""The environment a test gives the assistant it starts: this one, minus whatever the
caller's shell would add to the configuration (overrides, keys, a credentials directory)."""

from __future__ import annotations

import os

from assistant.config import ENV_PREFIX, LEGACY_ENV_PREFIX, NOT_CONFIG_VARIABLES

CONFIGURING = (
    ENV_PREFIX,
    LEGACY_ENV_PREFIX,
    "DIFY_",
    "OPENAI_",
    "CONVAI_",
    "CREDENTIALS_DIRECTORY",
)
"""Variables that change what the assistant is configured with."""


def clean_environment(*also: str) -> dict[str, str]:
    """os.environ without the configuring variables (and those starting with `also`); the
    program's own non-config ones (strict states, the PortAudio choice) are kept."""
    dropped = (*CONFIGURING, *also)
    return {
        name: value
        for name, value in os.environ.items()
        if name in NOT_CONFIG_VARIABLES or not name.startswith(dropped)
    }
