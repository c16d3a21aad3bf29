"""The method registry: `@register_method` on a class, `get_method(name)` to find it.

Every module in `engine/methods/` is imported on first use, so adding a method is adding its
file: the CLI, the UI form and the registry-wide tests pick it up.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TypeVar

from engine.checks import shown
from engine.errors import SpecError

_METHODS: dict[str, type] = {}
_loaded = False
T = TypeVar("T", bound=type)


def register_method(name: str) -> Callable[[T], T]:
    """Class decorator: register an `SSLMethod` subclass under `name` (duplicates refused)."""

    def wrap(cls: T) -> T:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(
                f"method {name!r} is registered twice "
                f"({_METHODS[name].__module__} and {cls.__module__})"
            )
        cls.name = name
        _METHODS[name] = cls
        return cls

    return wrap


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    import engine.methods as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"engine.methods.{info.name}")
    _loaded = True


def list_methods() -> list[str]:
    _load_all()
    return sorted(_METHODS)


def get_method(name: str) -> type:
    _load_all()
    if not isinstance(name, str) or name not in _METHODS:
        raise SpecError(
            f"unknown method {shown(name)}; choose one of: {', '.join(sorted(_METHODS))}"
        )
    return _METHODS[name]
