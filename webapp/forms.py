"""Config forms built from the engine's field dicts (`studio.method_form`).

Methods differ in their settings, so the Train tab creates one widget per distinct field of all
methods (the union) once, and a method change only toggles visibility and refills values. A
fixed set of components keeps event inputs static and values reliable (no re-render loses what
a user typed). A field that two methods share (steps, lr, ...) is one widget; one that differs
in kind (a number in one method, a choice in another) or in placement (main or "More settings")
gets a widget per variant.

Field dicts are `engine.contract.FormField`s: {"name", "type" ("int"|"float"|"bool"|"str"),
"default", "help", "choices", "min", "max", "main"}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.contract import FormField

# Fields with a widget of their own at the top of the form, not in the generic parameter list.
SEPARATE_FIELDS = ("backbone",)


def widget_kind(field: FormField) -> str:
    if field["type"] in ("int", "float", "bool"):
        return field["type"]
    return "choice" if field.get("choices") else "text"


def widget_key(field: FormField) -> tuple[str, str, bool]:
    return field["name"], widget_kind(field), bool(field.get("main"))


def pretty_label(name: str) -> str:
    return name.replace("_", " ")


def number_step(field: FormField) -> float:
    """Spinner step: 1 for whole numbers, the default's order of magnitude for reals."""
    if field["type"] == "int":
        return 1
    default = field.get("default")
    if not default:
        return 0.1
    return 10.0 ** math.floor(math.log10(abs(float(default))))


def widget_props(field: FormField) -> dict[str, Any]:
    """Constructor/update keywords for the field's widget (label, help as info, bounds)."""
    props: dict[str, Any] = {
        "label": pretty_label(field["name"]),
        "info": field.get("help") or None,
        "value": field["default"],
    }
    kind = widget_kind(field)
    if kind in ("int", "float"):
        props.update(minimum=field.get("min"), maximum=field.get("max"), step=number_step(field))
    elif kind == "choice":
        props.update(choices=list(field["choices"]))
    return props


def make_widget(field: FormField, visible: bool) -> gr.components.Component:
    kind, props = widget_kind(field), widget_props(field)
    if kind == "int":
        return gr.Number(precision=0, visible=visible, **props)
    if kind == "float":
        return gr.Number(visible=visible, **props)
    if kind == "bool":
        return gr.Checkbox(visible=visible, elem_classes=["ps-check"], **props)
    if kind == "choice":
        return gr.Dropdown(visible=visible, **props)
    return gr.Textbox(visible=visible, **props)


def same_value(value: Any, default: Any, kind: str) -> bool:
    """Whether a widget value equals the field's default (200.0 from a number box == 200)."""
    if kind in ("int", "float"):
        try:
            return value is not None and float(value) == float(default)
        except (TypeError, ValueError):
            return False
    return value == default


def clean_value(value: Any, kind: str) -> Any:
    """Whole floats from number boxes become ints for int fields; the rest is left to the
    engine, which checks every value and names the field in its error."""
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def overrides(fields: list[FormField], values: dict[str, Any]) -> dict[str, Any]:
    """The params of a spec: the values that differ from the preset's defaults.

    Keys in `values` that the form does not know are passed on unchanged, so the engine rejects
    them with its own message (the form never produces them; the CLI's `--set` can).
    """
    by_name = {f["name"]: f for f in fields}
    out: dict[str, Any] = {}
    for name, value in values.items():
        field = by_name.get(name)
        if field is None:
            out[name] = value
            continue
        kind = widget_kind(field)
        if not same_value(value, field["default"], kind):
            out[name] = clean_value(value, kind)
    return out


@dataclass
class ParamWidget:
    key: tuple[str, str, bool]
    component: gr.components.Component


class ParamForm:
    """The union of all methods' fields as widgets; `updates` shows one method's."""

    def __init__(self, forms: dict[str, list[FormField]]) -> None:
        """`forms`: method name -> its field dicts (any preset: only the shapes are used)."""
        self.forms = forms
        self.fields_by_key: dict[tuple[str, str, bool], FormField] = {}
        for fields in forms.values():
            for field in fields:
                if field["name"] not in SEPARATE_FIELDS:
                    self.fields_by_key.setdefault(widget_key(field), field)
        self.widgets: list[ParamWidget] = []

    def render(self, main: bool, fields: list[FormField]) -> None:
        """Create the main (or the "More settings") widgets inside the current layout block;
        those of `fields` (the initial method's form) are shown with its values."""
        current = {widget_key(f): f for f in fields if f["name"] not in SEPARATE_FIELDS}
        for key, field in self.fields_by_key.items():
            if key[2] != main:
                continue
            shown = current.get(key)
            component = make_widget(shown or field, visible=shown is not None)
            self.widgets.append(ParamWidget(key, component))

    @property
    def components(self) -> list[gr.components.Component]:
        return [w.component for w in self.widgets]

    def updates(self, fields: list[FormField]) -> dict[gr.components.Component, Any]:
        """{widget: its update}: the method's fields shown with their defaults, the rest
        hidden. Shown ones are fresh component instances, so a bound or help that is None
        for this method really clears the previous one (gr.update drops None entries)."""
        current = {widget_key(f): f for f in fields if f["name"] not in SEPARATE_FIELDS}
        out: dict[gr.components.Component, Any] = {}
        for widget in self.widgets:
            field = current.get(widget.key)
            out[widget.component] = (
                gr.update(visible=False) if field is None else make_widget(field, visible=True)
            )
        return out

    def values(self, fields: list[FormField], raw: list[Any]) -> dict[str, Any]:
        """Widget values (in `components` order) -> {field name: value} for `fields` only."""
        current = {widget_key(f): f["name"] for f in fields if f["name"] not in SEPARATE_FIELDS}
        return {current[w.key]: value for w, value in zip(self.widgets, raw) if w.key in current}
