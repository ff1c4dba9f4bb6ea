"""`--set KEY=VALUE` on the command line: dotted keys set in the TOML document before it is
validated, so an override is checked like the file itself."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

from gateway.errors import ConfigError


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, object]) -> None:
    """Set dotted keys ("broker.port") in a raw TOML document, in place."""
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError("--set", dotted, f"{part} is not a table")
            node = child
        node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, object]:
    """Parse `KEY=VALUE` from the command line; VALUE is a TOML value or a bare string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", text, "expected KEY=VALUE, e.g. broker.port=8883")
    try:
        parsed: object = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip(), parsed
