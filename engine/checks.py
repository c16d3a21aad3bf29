"""Checks of the values that reach the engine from outside (the web API, a form, the CLI).

Each returns the value in its plain type or raises a `StudioError` (SpecError unless told)
whose message names the field: a boolean is not a number, 2.5 is not a whole number, 10**30
is out of range, a dict is not a name, a 10,000-character string is too long. They run before
a value reaches SQLite (whose integers stop at 2**63 - 1), numpy seeds (2**32 - 1) or the
filesystem (255 bytes a name). Torch-free, like `engine.errors`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from engine.errors import JobError, SpecError, StudioError

MAX_NAME_CHARS = 200  # a method, dataset, preset, split or protocol name
MAX_REF_CHARS = 1024  # a model reference or a path: a run id, a folder, a Hub id
MAX_ID = 2**63 - 1  # SQLite's largest integer: job ids and steps fit below it
MAX_SEED = 2**32 - 1  # numpy's seeds stop here (torch's at 2**64 - 1)


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut to about `limit` characters for a message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def whole_number(
    value: Any,
    name: str,
    low: int | None = None,
    high: int | None = None,
    error: type[StudioError] = SpecError,
) -> int:
    """`value` as an int: an int or a whole float (a number widget's 3.0), never a boolean or
    a string, within [low, high] where given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{name} must be a whole number, got {shown(value)}")
    if not isinstance(value, numbers.Integral):
        as_float = float(value)
        if not math.isfinite(as_float) or not as_float.is_integer():
            raise error(f"{name} must be a whole number, got {shown(value)}")
    out = int(value)
    _check_range(out, name, low, high, error)
    return out


def number(
    value: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    error: type[StudioError] = SpecError,
) -> float:
    """`value` as a finite float (an int is fine), never a boolean or a string, within
    [low, high] where given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{name} must be a number, got {shown(value)}")
    try:
        out = float(value)
    except OverflowError:  # an int past 1e308
        out = math.inf
    if not math.isfinite(out):
        raise error(f"{name} must be a finite number, got {shown(value)}")
    _check_range(out, name, low, high, error)
    return out


def _check_range(
    value: float, name: str, low: float | None, high: float | None, error: type[StudioError]
) -> None:
    if low is not None and high is not None and not low <= value <= high:
        raise error(f"{name} must be from {low} to {high}, got {shown(value)}")
    if low is not None and value < low:
        raise error(f"{name} must be at least {low}, got {shown(value)}")
    if high is not None and value > high:
        raise error(f"{name} must be at most {high}, got {shown(value)}")


def text(
    value: Any, name: str, max_chars: int = MAX_NAME_CHARS, error: type[StudioError] = SpecError
) -> str:
    """`value` if it is a string of at most `max_chars` characters."""
    if not isinstance(value, str):
        raise error(f"{name} must be text, got {shown(value)}")
    if len(value) > max_chars:
        raise error(f"{name} is too long: {len(value):,} characters (at most {max_chars:,})")
    return value


def optional_text(
    value: Any, name: str, max_chars: int = MAX_NAME_CHARS, error: type[StudioError] = SpecError
) -> str | None:
    """None, or `value` checked by `text`."""
    return None if value is None else text(value, name, max_chars, error)


def mapping(value: Any, name: str, error: type[StudioError] = SpecError) -> dict[str, Any]:
    """`value` if it is a dict with string keys (a JSON object)."""
    if not isinstance(value, dict):
        raise error(f'{name} must be a JSON object ({{"key": value, ...}}), got {shown(value)}')
    for key in value:
        text(key, f"a key of {name}", MAX_NAME_CHARS, error)
    return value


def job_id(value: Any, name: str = "job id") -> int:
    """A job id: a whole number from 1 (JobError otherwise)."""
    out = whole_number(value, name, error=JobError)
    if not 1 <= out <= MAX_ID:
        raise JobError(f"{name} must be a positive whole number, got {shown(out)}")
    return out
