"""TOML files read into pydantic models, with errors that name the file and the key.

The gateway's configuration and the simulator's scenarios are both read this way; each
passes its own error type and its own way of naming a key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def parse_toml(
    text: str,
    source: str,
    model: type[M],
    error: type[Exception],
    describe: Callable[[ValidationError], str],
) -> M:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(f"{source}: {describe(exc)}") from exc


def read_text(path: Path, error: type[Exception]) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text") from exc
