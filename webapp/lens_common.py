"""What the lens tabs share: the image input, the model picker, and the wiring that makes each
lens both a tab and a named endpoint.

A lens tab subclasses `LensTab`: `build()` lays out its widgets and sets `inputs`, `outputs`,
`run_btn` and `note`; `compute(*inputs)` calls the engine and returns `(outputs, note)` in plain
values (`present` may restyle them for the tab); the engine raises a StudioError for bad input.
`wire()` then connects:
  - the Run button (and input changes) to `run_ui`, which shows an engine error as a message
    next to the inputs and clears the pictures;
  - a hidden trigger to `run_api`, public under `api_name`, which raises the message as
    `gr.Error`, so a gradio_client caller gets an exception that says what to fix.
Either way a bug shows as "internal error, logged on the server (id N)" (webapp/errors.py), and
an API client's value of the wrong type (a boolean for a slider, a dict for a text) is refused
with a message naming the input before Gradio's own preprocessing (`guard_inputs`).
Images cross as file paths (inputs) and numpy uint8 arrays (outputs, sent as PNG so no pixel
changes on the way).

A new lens: its engine function and `Lens` (model types, words for the wrong-family message,
Hub suggestions) in `engine/inference/<lens>.py`, one line in `LENS_SPECS`
(engine/inference/models.py), a `Lenses` method (engine/api_lenses.py) with its result type
and its line in the `Lenses` protocol (engine/contract.py); here a `LensTab`
subclass in `lens_<name>.py` with a `ModelPicker(studio, "<lens>")`, one line in `TABS`
(webapp/app.py; or in a `LensGroup`'s members there, which puts related lenses side by side
under one tab) and in `endpoints.LENS_ENDPOINTS`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gradio as gr

from engine.checks import shown
from engine.contract import Studio
from webapp.errors import api_error, error_note

log = logging.getLogger(__name__)
PICKER_INFO = (
    "A run from the list, a folder on the server, or a Hub id (when online). "
    "Runs appear here once they have a checkpoint."
)
# A hosted studio without data roots reads no server folder (engine/access.py).
PICKER_INFO_NO_PATHS = (
    "A run from the list, or a Hub id (when online). Runs appear here once they have a checkpoint."
)


def picker_info(studio: Studio) -> str:
    paths = getattr(studio, "paths", None)
    return PICKER_INFO if paths is None or paths.server_paths_allowed else PICKER_INFO_NO_PATHS


class LensImage(gr.Image):
    """`gr.Image` (same browser widget) that passes a file it cannot open on to the engine,
    whose check names the problem ("x.txt is not an image file"), instead of failing inside
    Gradio's preprocessing with a generic error."""

    is_template = True  # use gr.Image's frontend

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)
        except Exception:  # noqa: BLE001 - PIL raises several kinds for a non-image
            return getattr(payload, "path", None)


def image_input(label: str = "Image") -> LensImage:
    """The lenses' image input: a file path reaches the handler (the engine checks and decodes
    it, pixel limit first); image_mode=None, so Gradio does not re-encode it."""
    return LensImage(
        label=label, type="filepath", image_mode=None, sources=["upload", "clipboard"], height=280
    )


def picture(label: str, **kwargs: Any) -> gr.Image:
    """An output picture, sent as PNG (lossless) and not editable."""
    return gr.Image(label=label, type="numpy", format="png", interactive=False, **kwargs)


def examples(
    studio: Studio, image: gr.Image, per_page: int = 8, picker: ModelPicker | None = None
) -> Any:
    """The bundled example pictures (scikit-image's photographs, builtin shapes and scenes).
    With the tab's `picker`, they follow the model (`ModelExamples`, wired by `LensTab.wire`):
    a run trained on shapes gets the shapes only, one trained on scenes the scenes, any other
    model all of them, the photographs first."""
    try:
        found = studio.lenses.lens_examples()
    except Exception:
        log.exception("lens examples could not be written")
        return None
    if not found:
        return None
    rows = [[e["path"]] for e in found]
    if picker is None:
        return gr.Examples(rows, [image], label="Examples", examples_per_page=per_page)
    return ModelExamples(studio, image, by_dataset(found, rows), rows, picker.dropdown.value)


def by_dataset(found: list[Any], rows: list[list[Any]]) -> dict[str, list[list[Any]]]:
    """{dataset: its rows} of example pictures named "<dataset>-<n>-<label>" (the builtin sets'
    pictures; `found[i]["name"]` names `rows[i]`)."""
    out: dict[str, list[list[Any]]] = {}
    for example, row in zip(found, rows, strict=True):
        prefix, dash, _ = example["name"].partition("-")
        if dash:
            out.setdefault(prefix, []).append(row)
    return out


# ---- the model picker --------------------------------------------------------------------
class ModelDropdown(gr.Dropdown):
    """`gr.Dropdown` (same browser widget) that the API page and gradio_client type as a plain
    string: a model is any run id, folder or Hub id, not only the listed choices (a Dropdown
    advertises `Literal[...]` of its choices even with allow_custom_value=True)."""

    is_template = True  # use gr.Dropdown's frontend

    def api_info(self) -> dict[str, Any]:
        return {"type": "string"}


def model_choices(studio: Studio, lens: str) -> list[tuple[str, str]]:
    return [(c["label"], c["value"]) for c in studio.lenses.lens_models(lens)]


class ModelPicker:
    """A dropdown of the runs (and Hub ids) a lens can open, typed values allowed, with a
    refresh button; refreshed on page load too."""

    def __init__(self, studio: Studio, lens: str, label: str = "Model") -> None:
        self.studio, self.lens = studio, lens
        choices = model_choices(studio, lens)
        with gr.Row(equal_height=False):
            self.dropdown = ModelDropdown(
                choices=choices,
                value=studio.lenses.default_model(lens),  # newest completed run, or Hub
                allow_custom_value=True,
                label=label,
                info=picker_info(studio),
                scale=5,
            )
            self.refresh_btn = gr.Button("↻", size="sm", scale=0, min_width=44)

    def refresh(self, current: str | None) -> Any:
        choices = model_choices(self.studio, self.lens)
        default = current or self.studio.lenses.default_model(self.lens)
        return gr.Dropdown(choices=choices, value=default)

    def wire(self, demo: gr.Blocks) -> None:
        private = dict(api_visibility="private", show_progress="hidden")
        self.refresh_btn.click(self.refresh, [self.dropdown], [self.dropdown], **private)
        demo.load(self.refresh, [self.dropdown], [self.dropdown], **private)


# ---- examples that fit the model ----------------------------------------------------------
CAPTION_DATASETS = ("captions", "shapes")  # a run trained on these reads shapes' captions


def trained_on(studio: Studio, model: str | None) -> str | None:
    """The dataset a studio run `model` ("12" or "#12") trained on; None for a Hub id, a
    folder or an unknown run."""
    text = str(model or "").strip().removeprefix("#")
    if not text.isdigit():
        return None
    try:
        return str(studio.job(int(text))["dataset"])
    except Exception:  # noqa: BLE001 - an unknown run: the lens itself will say so
        return None


class ModelExamples:
    """Example lists, one shown at a time: `own[d]` for a run trained on dataset `d`,
    `everyday` for any other model (a Hub model, a run on another set). The picker's change
    swaps them, and an input still holding an example of a hidden list takes the first of the
    shown one. `captions` is the first own list (the text lenses have one, for a run on
    shapes or their captions)."""

    def __init__(
        self,
        studio: Studio,
        target: Any,
        own: dict[str, list[list[Any]]],
        everyday: list[list[Any]],
        model: str | None,
        inputs: list[Any] | None = None,
        label: str = "Examples",
        column: int = 0,
    ) -> None:
        self.studio, self.target, self.column = studio, target, column
        self.own = {d: rows for d, rows in own.items() if rows}
        self.everyday = everyday
        # One box per distinct list (datasets may share one), the everyday list last.
        self.lists: list[list[list[Any]]] = []
        for rows in self.own.values():
            if not any(rows is seen for seen in self.lists):
                self.lists.append(rows)
        self.captions = self.lists[0] if self.lists else everyday
        self.lists.append(everyday)
        inputs = inputs or [target]
        shown = self.rows_for(model)
        self.boxes = []
        for rows in self.lists:
            own_list = rows is not everyday
            with gr.Column(visible=rows is shown) as box:
                gr.Examples(
                    rows, inputs, label=f"{label} (like its training data)" if own_list else label
                )
            self.boxes.append(box)
        self.caption_box, self.everyday_box = self.boxes[0], self.boxes[-1]

    def rows_for(self, model: str | None) -> list[list[Any]]:
        return self.own.get(trained_on(self.studio, model) or "", self.everyday)

    def first(self, model: str | None) -> str:
        """The target's default: the first example that fits `model`."""
        return self.rows_for(model)[0][self.column]

    def update(self, model: str | None, current: Any) -> list[Any]:
        shown = self.rows_for(model)
        ours = [row[self.column] for row in shown]
        others = [row[self.column] for rows in self.lists if rows is not shown for row in rows]
        stale = current not in ours and current in others
        return [
            *(gr.Column(visible=rows is shown) for rows in self.lists),
            ours[0] if stale else gr.skip(),
        ]

    def wire(self, picker: ModelPicker) -> None:
        picker.dropdown.change(
            self.update,
            [picker.dropdown, self.target],
            [*self.boxes, self.target],
            api_visibility="private",
            show_progress="hidden",
        )


def text_examples(studio: Studio, lens: str, target: Any, model: str | None) -> ModelExamples:
    """A text lens's examples (`studio.lenses.text_examples`) that follow the model."""
    found = studio.lenses.text_examples(lens)
    captions = [[text] for text in found["captions"]]
    own = dict.fromkeys(CAPTION_DATASETS, captions)  # one list, shown for either set
    return ModelExamples(studio, target, own, [[text] for text in found["everyday"]], model)


# ---- the tab ------------------------------------------------------------------------------
class LensTab:
    """Base of the lens tabs; see the module docstring."""

    api_name: str = ""
    intro: str = ""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []
        self.run_btn: gr.Button
        self.note: gr.HTML
        self.auto_triggers: list[Any] = []  # input events that also run the lens

    def build(self) -> None:
        raise NotImplementedError

    def compute(self, *values: Any) -> tuple[list[Any], str]:
        """Engine call -> (one value per output, the note's HTML)."""
        raise NotImplementedError

    def header(self) -> None:
        if self.intro:
            gr.Markdown(self.intro, elem_classes=["ps-hint"])

    def make_note(self) -> gr.HTML:
        self.note = gr.HTML("", elem_classes=["ps-note"])
        return self.note

    def hidden_trigger(self) -> None:
        """The named endpoint's trigger: never shown, called by API clients only."""
        self.api_btn = gr.Button(visible=False)

    def run_ui(self, *values: Any) -> list[Any]:
        try:
            outputs, note = self.compute(*values)
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            return [*self.cleared(), error_note(error, f"{self.api_name} lens")]
        return [*self.present(outputs), note]

    def present(self, outputs: list[Any]) -> list[Any]:
        """The outputs as the tab shows them (e.g. a gallery's columns); API clients get the
        plain values."""
        return outputs

    def run_api(self, *values: Any) -> list[Any]:
        try:
            outputs, _ = self.compute(*values)
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            raise api_error(error, f"/{self.api_name}") from None
        return outputs

    def api_function(self) -> Callable[..., list[Any]]:
        """`run_api` under `compute`'s signature: Gradio names the endpoint's parameters after
        it (`image`, `model`, `k`...), so gradio_client keyword calls work, where `*values`
        would publish `param_0`, `param_1`..."""

        @functools.wraps(self.compute)
        def endpoint(*values: Any) -> list[Any]:
            return self.run_api(*values)

        return endpoint

    def cleared(self) -> list[Any]:
        return [None] * len(self.outputs)

    def wire(self, demo: gr.Blocks) -> None:
        guard_inputs(self.inputs)
        gr.on(
            [self.run_btn.click, *self.auto_triggers],
            self.run_ui,
            self.inputs,
            [*self.outputs, self.note],
            api_visibility="private",
            trigger_mode="always_last",
        )
        self.api_btn.click(
            self.api_function(),
            self.inputs,
            self.outputs,
            api_name=self.api_name,
            api_visibility="public",
        )
        for picker in self.pickers():
            picker.wire(demo)
        pictures = getattr(self, "picture_examples", None)
        if isinstance(pictures, ModelExamples) and self.pickers():
            pictures.wire(self.pickers()[0])

    def pickers(self) -> Sequence[ModelPicker]:
        return [value for value in vars(self).values() if isinstance(value, ModelPicker)]


def guard_inputs(components: Sequence[Any]) -> None:
    """Make each input refuse an API client's payload of the wrong type with a gr.Error that
    names it ("Layer must be a number, got True"), where Gradio's preprocessing would fail
    with a generic error or pass it on (a boolean for a slider, a dict for a textbox), and
    prefix Gradio's own refusals (a value out of bounds or not among the choices) with it.
    The browser always sends the right type; this is for the public endpoints."""
    for component in components:
        if not isinstance(component, LensImage):  # which passes any file on to the engine
            component.preprocess = _guarded(component, component.preprocess)


def _guarded(component: Any, preprocess: Any) -> Any:
    label = component.label or type(component).__name__
    numeric = isinstance(component, (gr.Number, gr.Slider))

    def guarded(payload: Any) -> Any:
        if payload is None and isinstance(component, gr.Slider):
            raise gr.Error(f"{label} needs a number", print_exception=False)
        if (
            payload is not None
            and numeric
            and (isinstance(payload, bool) or not isinstance(payload, (int, float)))
        ):
            raise gr.Error(f"{label} must be a number, got {shown(payload)}", print_exception=False)
        if (
            payload is not None
            and isinstance(component, gr.Textbox)
            and not isinstance(payload, str)
        ):
            raise gr.Error(f"{label} must be text, got {shown(payload)}", print_exception=False)
        try:
            return preprocess(payload)
        except gr.Error as error:
            raise gr.Error(f"{label}: {error.message}", print_exception=False) from None

    return guarded


class LensGroup:
    """Related lens tabs as inner tabs of one top-level tab (the CLIP lenses, the language
    lenses), so the tab row stays short; each lens keeps its own endpoint.
    `members`: (label, id, LensTab subclass) per inner tab."""

    def __init__(self, studio: Studio, members: Sequence[tuple[str, str, type]]) -> None:
        self.members = [(label, tab_id, cls(studio)) for label, tab_id, cls in members]

    def build(self) -> None:
        with gr.Tabs():
            for label, tab_id, tab in self.members:
                with gr.Tab(label, id=tab_id):
                    tab.build()

    def wire(self, demo: gr.Blocks) -> None:
        for _, _, tab in self.members:
            tab.wire(demo)


def all_pickers(tab: Any) -> list[ModelPicker]:
    """Every model picker of a top-level tab (a lens, or a group of lenses); none elsewhere."""
    if isinstance(tab, LensGroup):
        return [picker for _, _, member in tab.members for picker in all_pickers(member)]
    return list(tab.pickers()) if isinstance(tab, LensTab) else []


def refresh_pickers(pickers: Sequence[ModelPicker]) -> Callable[..., list[Any]]:
    """A handler refreshing `pickers` (their current values in, updated dropdowns out): run
    when a tab is selected, so a run that finished since the page loaded is offered."""

    def refresh(*current: str | None) -> list[Any]:
        return [picker.refresh(value) for picker, value in zip(pickers, current, strict=True)]

    return refresh


def details_json(result: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The plain-typed facts of an engine result, for the Details panel and API clients."""
    out = {}
    for key in keys:
        value = result.get(key)
        if hasattr(value, "tolist"):
            value = value.tolist()
        out[key] = value
    return out


def score_plot(label: str, x: str, y: str = "probability") -> gr.BarPlot:
    """A bar chart of scores, highest first (the zero-shot and fill-mask lenses); the axis
    starts at 0 (bars stay proportional) and ends at the highest bar, so small probabilities
    stay readable."""
    return gr.BarPlot(
        x=x, y=y, y_lim=[0, None], sort="-y", label=label, height=260, x_label_angle=-30
    )
