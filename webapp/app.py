"""`build_app(studio)`: the Pretext Studio dashboard as a `gr.Blocks`.

Tabs are listed in `TABS`; each is a class with `build()` (layout, inside its gr.Tab) and
`wire()` (events). A later tab (Runs, the lenses) is one more file and one more line there;
related lenses share a tab as a `LensGroup` (inner tabs: CLIP, Language).
Theme and CSS go to `launch()` (Gradio 6): use `demo.launch(**launch_options())`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gradio as gr

from engine.contract import Studio
from webapp import endpoints
from webapp.access import Access, GuardedStudio
from webapp.explorer_tab import ExplorerTab
from webapp.figures import message
from webapp.jobs_tab import JobsTab
from webapp.lens_attention import AttentionTab
from webapp.lens_common import LensGroup, all_pickers, refresh_pickers
from webapp.lens_fill_mask import FillMaskTab
from webapp.lens_generate import GenerateTab
from webapp.lens_reconstruct import ReconstructTab
from webapp.lens_retrieve import RetrieveTab
from webapp.lens_text2text import Text2TextTab
from webapp.lens_views import ViewsTab
from webapp.lens_zero_shot import ZeroShotTab
from webapp.runs_tab import RunsTab
from webapp.train_tab import TrainTab

TITLE = "Pretext Studio"
DESCRIPTION = (
    "Pretrain models with self-supervised learning (SimCLR, MAE, ...), watch their "
    "curves live, and keep every job's history."
)

CSS = """
.ps-header h1 { margin: 0; font-size: 1.6rem; }
.ps-header p { margin: 0.15rem 0 0 0; opacity: 0.8; }
.ps-msg { padding: 0.45rem 0.7rem; border-radius: 6px; margin: 0.15rem 0;
          border: 1px solid transparent; font-size: 0.92rem; line-height: 1.35; }
.ps-info { background: var(--neutral-100); border-color: var(--neutral-200); }
.ps-ok { background: #e8f6ec; border-color: #9bd3ac; color: #17542b; }
.ps-warn { background: #fff6e0; border-color: #f0cf7a; color: #6b4a00; }
.ps-error { background: #fdecec; border-color: #f09a9a; color: #8a1414; }
.dark .ps-info { background: var(--neutral-800); border-color: var(--neutral-700); }
.dark .ps-ok { background: #12301c; color: #b9efc9; }
.dark .ps-warn { background: #3a2e0a; color: #f7dd9a; }
.dark .ps-error { background: #3d1414; color: #ffc4c4; }
.ps-status .ps-msg { font-variant-numeric: tabular-nums; }
.ps-note:empty, .ps-note .prose:empty { display: none; }
.ps-params > div { min-width: 170px; }
/* Gradio leaves a checkbox's block no minimum width: among number boxes its label shrank to
   one letter. */
.ps-params .ps-check { min-width: 170px !important; }
/* A dropdown's text stops before its arrow (long run names were cut under it). */
.wrap-inner .secondary-wrap > input { padding-right: 1.6rem; text-overflow: ellipsis; }
/* Retrieval captions (score · label: caption) wrap instead of being cut. */
#ps-retrieve-gallery .caption-label { white-space: normal; max-width: none;
  left: var(--block-label-margin); line-height: 1.25; }
/* Train tab (one screen at 1366x768): the live column stays in view while the form scrolls;
   each field's help is one line, whole on hover or focus. */
.ps-live { position: sticky; top: 0.5rem; align-self: flex-start; }
/* Gradio's container hides overflow, which makes it the scroll box that sticky sticks to
   (never scrolled): clip paints the same and leaves the page's scrolling to sticky. */
.gradio-container { overflow: clip !important; }
.ps-form .info-text { display: -webkit-box; -webkit-line-clamp: 1; -webkit-box-orient: vertical;
                      overflow: hidden; cursor: help; }
.ps-form .info-text:hover { -webkit-line-clamp: unset; overflow: visible; position: absolute;
    z-index: 30; left: var(--block-padding); right: var(--block-padding); padding: 0.3rem 0.5rem;
    background: var(--background-fill-primary); border: 1px solid var(--border-color-primary);
    border-radius: 6px; box-shadow: 0 4px 14px rgba(0, 0, 0, 0.12); }
.ps-chart { padding: 0 !important; }
.ps-chart-controls .info-text { font-size: 0.78rem; }
"""


def theme() -> gr.themes.Base:
    return gr.themes.Soft(primary_hue="indigo", neutral_hue="slate")


MAX_UPLOAD_ENV = "PRETEXT_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 2048  # a zip of images expands to at most 2 GB (engine.data.archives)


def max_upload_bytes() -> int:
    """Gradio's cap on one uploaded file: $PRETEXT_MAX_UPLOAD_MB megabytes (default 2048)."""
    import math
    import os

    raw = os.environ.get(MAX_UPLOAD_ENV, "").strip() or str(DEFAULT_MAX_UPLOAD_MB)
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = math.nan
    if not math.isfinite(megabytes) or megabytes <= 0:
        raise ValueError(
            f"{MAX_UPLOAD_ENV}={raw!r}: give the largest upload as a positive "
            f"number of megabytes, e.g. {DEFAULT_MAX_UPLOAD_MB} (the default)"
        )
    return max(1, int(megabytes * 1024**2))


def launch_options() -> dict[str, Any]:
    """What `launch()` takes from here: the look (Gradio 6 moved theme/css there) and the
    upload cap. A bad $PRETEXT_MAX_UPLOAD_MB stops the start with one line saying so."""
    try:
        max_file_size = max_upload_bytes()
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    return {"theme": theme(), "css": CSS, "max_file_size": max_file_size}


TABS: list[tuple[str, str, Any]] = [
    ("Train", "train", TrainTab),
    ("Jobs", "jobs", JobsTab),
    ("Runs", "runs", RunsTab),
    ("Attention", "attention", AttentionTab),
    ("MAE reconstruction", "reconstruct", ReconstructTab),
    ("What the model sees", "views", ViewsTab),
    (
        "CLIP",
        "clip",
        partial(
            LensGroup,
            members=[
                ("Zero-shot", "zero_shot", ZeroShotTab),
                ("Retrieval", "retrieve", RetrieveTab),
            ],
        ),
    ),
    (
        "Language",
        "language",
        partial(
            LensGroup,
            members=[
                ("Fill-mask", "fill_mask", FillMaskTab),
                ("Generate", "generate", GenerateTab),
                ("Text to text", "text2text", Text2TextTab),
            ],
        ),
    ),
    ("Embeddings", "embeddings", ExplorerTab),
]


def build_app(studio: Studio, access: Access | None = None) -> gr.Blocks:
    """The whole dashboard over one `engine.api.Studio` (the only engine object used; the
    tabs see it through the `engine.contract.Studio` protocol).

    `access` (default: local, everyone owns) decides who may change things; every handler
    gets the Studio wrapped in `GuardedStudio`, which refuses viewers' changes."""
    access = access or Access()
    studio = GuardedStudio(studio, access)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        endpoints.register(studio)  # first, so the public names stay unsuffixed
        gr.HTML(f'<div class="ps-header"><h1>{TITLE}</h1><p>{DESCRIPTION}</p></div>')
        owner = OwnerBar(access)
        tabs: dict[str, Any] = {}
        with gr.Tabs(selected="train") as tab_row:
            for label, tab_id, tab_class in TABS:
                with gr.Tab(label, id=tab_id):
                    tabs[tab_id] = tab_class(studio)
                    tabs[tab_id].build()
        for tab in tabs.values():
            tab.wire(demo)
        # The lenses' model lists follow the runs: refreshed whenever a tab is opened too.
        pickers = [picker for tab in tabs.values() for picker in all_pickers(tab)]
        dropdowns = [picker.dropdown for picker in pickers]
        tab_row.select(
            refresh_pickers(pickers),
            dropdowns,
            dropdowns,
            api_visibility="private",
            show_progress="hidden",
        )
        tabs["jobs"].wire_visibility(tab_row, "Jobs")
        tabs["runs"].wire_visibility(tab_row, "Runs")
        _wire_between_tabs(tabs["train"], tabs["jobs"], tab_row)
        owner.wire(
            demo,
            [
                tabs["train"].start_btn,
                tabs["train"].demo_btn,
                *tabs["train"].data_panel.owner_controls,
                tabs["runs"].eval_btn,
            ],
        )
    return demo


class OwnerBar:
    """Public and viewer modes: a line saying what a visitor may do and, where the owner can
    sign in, the owner-key box (and on a Space Hugging Face's login button). On page load and
    sign-in, the controls that change things are enabled only for the owner."""

    def __init__(self, access: Access) -> None:
        self.access = access
        self.key = self.sign_in_btn = self.login = None
        shown = access.mode in ("public", "viewer")
        with gr.Row(visible=shown, equal_height=True):
            self.note = gr.HTML(
                message(access.viewer_hint().capitalize() + ".", "info") if shown else "",
                elem_classes="ps-note",
                scale=4,
            )
            if access.owner_key and access.mode == "public":
                self.key = gr.Textbox(
                    label="Owner key",
                    show_label=False,
                    type="password",
                    scale=2,
                    container=False,
                    placeholder="Owner key (PRETEXT_OWNER_KEY)",
                )
                self.sign_in_btn = gr.Button("Sign in", size="sm", scale=0, min_width=90)
            if access.oauth:
                self.login = gr.LoginButton(scale=0)

    def state(self, owner: bool) -> list:
        if self.access.mode not in ("public", "viewer"):
            note = gr.skip()
        elif owner:
            note = message(
                "Signed in as the owner: you can start, stop, add data and evaluate.", "ok"
            )
        else:
            note = message(self.access.viewer_hint().capitalize() + ".", "info")
        return [note, *[gr.update(interactive=owner)] * self.n_controls]

    def wire(self, demo: gr.Blocks, controls: list[Any]) -> None:
        self.n_controls = len(controls)
        private = dict(api_visibility="private", show_progress="hidden")
        outputs = [self.note, *controls]

        def on_load(request: gr.Request) -> list:
            return self.state(self.access.may_change(request))

        def on_load_oauth(profile: gr.OAuthProfile | None, request: gr.Request) -> list:
            name = getattr(profile, "username", None)
            self.access.sign_in_with_profile(name, request)
            return self.state(self.access.may_change(request))

        def on_sign_in(key: str, request: gr.Request) -> list:
            if self.access.sign_in_with_key(key, request):  # the key box has done its job
                return [
                    *self.state(True),
                    gr.update(value="", visible=False),
                    gr.update(visible=False),
                ]
            return [
                message("That is not the owner key.", "error"),
                *[gr.skip()] * self.n_controls,
                "",
                gr.skip(),
            ]

        if self.access.mode in ("local", "private", "open"):
            return  # everyone owns: nothing to switch
        for control in controls:  # a viewer's page starts with them off, before any load
            control.interactive = False
        demo.load(on_load_oauth if self.access.oauth else on_load, None, outputs, **private)
        if self.sign_in_btn is not None:
            for event in (self.sign_in_btn.click, self.key.submit):
                event(on_sign_in, [self.key], [*outputs, self.key, self.sign_in_btn], **private)


def _wire_between_tabs(train: TrainTab, jobs: JobsTab, tab_row: gr.Tabs) -> None:
    """Jobs -> "Follow in Train tab": the Train tab follows the selected job."""

    def follow_in_train(job_id: int | None) -> dict:
        return {**train.follow(job_id), tab_row: gr.Tabs(selected="train")}

    jobs.open_btn.click(
        follow_in_train, [jobs.selected], [*train.follow_outputs, tab_row], api_visibility="private"
    )
