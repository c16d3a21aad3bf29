"""How the web app answers a request that failed.

A `StudioError` (engine/errors.py) is the user's to fix: its message is shown as it is, as a
`gr.Error` for an API client or in red beside the inputs of a tab. Any other exception is a bug:
its traceback goes to the server log under a short id, and the user sees only
"internal error, logged on the server (id 3f9a1c)", so the owner can find it and nothing of the
server's insides leaks into the page.

    try:
        job_id = studio.submit(spec)
    except Exception as error:
        return error_note(error, "submit")

Endpoints also check each argument against its annotation first (`check_arguments`), so a
boolean sent as a job id or a dict sent as a name is refused with a message naming the field.
"""

from __future__ import annotations

import inspect
import logging
import secrets
import types
import typing
from collections.abc import Callable
from typing import Any

import gradio as gr

from engine.checks import MAX_REF_CHARS, mapping, number, shown, text, whole_number
from engine.errors import SpecError, StudioError
from webapp.figures import message

log = logging.getLogger(__name__)
INTERNAL = "internal error, logged on the server (id {})"


def error_text(error: BaseException, context: str) -> str:
    """The user's message for `error`; a bug (anything but a StudioError or gr.Error) is
    logged first, with its traceback and the id the message gives."""
    if isinstance(error, gr.Error):  # gradio's own refusal (a value not among the choices)
        return str(error.message)
    if isinstance(error, StudioError):
        return str(error)
    incident = secrets.token_hex(3)
    log.error(
        "internal error (id %s) in %s",
        incident,
        context,
        exc_info=(type(error), error, error.__traceback__),
    )
    return INTERNAL.format(incident)


def error_note(error: BaseException, context: str) -> str:
    """`error` as the red message beside a tab's inputs."""
    return message(error_text(error, context), "error")


def api_error(error: BaseException, context: str) -> gr.Error:
    """`error` as the gr.Error an API client receives (raise it `from None`)."""
    if isinstance(error, gr.Error):
        return error
    return gr.Error(error_text(error, context), print_exception=False)


# ---- endpoint arguments ------------------------------------------------------------------
def _kinds(annotation: Any) -> tuple[set[type], bool]:
    """({plain types} the annotation allows, whether None is allowed)."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    args = typing.get_args(annotation) if union else (annotation,)
    kinds = {typing.get_origin(a) or a for a in args if a is not type(None)}
    return kinds, type(None) in args


def argument_checker(fn: Callable) -> Callable[..., None]:
    """A function that checks a call's arguments against `fn`'s annotations (int, float, str,
    dict, list, each maybe Optional): a SpecError names the first wrong one. Other
    annotations (gr.Request, ...) are not checked."""
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: check nothing
        hints = {}
    checks: dict[str, tuple[set[type], bool]] = {
        name: _kinds(hint) for name, hint in hints.items() if name != "return"
    }

    def check(*args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise SpecError(f"{fn.__name__}: {error}") from None
        for name, value in bound.arguments.items():
            if name in checks:
                _check_value(name, value, *checks[name])

    return check


def _check_value(name: str, value: Any, kinds: set[type], optional: bool) -> None:
    if value is None and optional:
        return
    if kinds == {int}:
        whole_number(value, name)
    elif kinds == {float} or kinds == {int, float}:
        number(value, name)
    elif kinds == {str}:
        text(value, name, MAX_REF_CHARS)
    elif kinds == {dict}:
        mapping(value, name)
    elif kinds == {list} and not isinstance(value, list):
        raise SpecError(f"{name} must be a list, got {shown(value)}")
