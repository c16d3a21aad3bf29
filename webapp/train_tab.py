"""Train tab: the form for a new job, then a live view of the job it started.

The form is built from `studio.method_form` (see forms.py). Start turns it into a spec whose
params are only the values that differ from the preset's defaults and calls `studio.submit`; a
refused spec shows the engine's message beside the form and creates nothing. The tab then
follows the job: a `gr.Timer` (1 s, then 2 s once the loss has 50 points), active only while
the followed job is queued or running, fetches the points after the last step it has
(`studio.metrics(job_id, since)`). Handlers with several outputs answer `{component: value}`
(figures.Updates); what they leave out stays.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from engine.contract import (
    ACTIVE_STATUSES,
    RESUMABLE_STATUSES,
    TERMINAL_STATUSES,
    DatasetInfo,
    DemoPlan,
    FormField,
    HardwareInfo,
    JobSpec,
    JobStatus,
    MethodInfo,
    ProtocolInfo,
    Studio,
    TextSample,
)
from webapp.access import may_change
from webapp.cards import card_markdown, cards_table
from webapp.data_panel import DataPanel
from webapp.errors import error_note, error_text
from webapp.figures import (
    FAST_POINTS,
    CurvePanel,
    Curves,
    Updates,
    empty_curves,
    message,
    poll,
    respond,
)
from webapp.forms import ParamForm, clean_value, overrides

log = logging.getLogger(__name__)
IDLE_TEXT = "No job followed yet: choose a method and a dataset, then press Start."
# The followed job is polled every POLL_S while its loss has few points (the first points show
# at once), then every SLOW_POLL_S: each poll is a Gradio event that costs the server and the
# browser tens of milliseconds, taken from training on a small machine (bench/ui_overhead.py).
POLL_S = 1.0
SLOW_POLL_S = 2.0
SAMPLE_POLL_S = 3.0  # text samples (GPT generations, T5 fills): only while following a text job


# ---- plain helpers (no components) ------------------------------------------------------
def method_choices(methods: list[MethodInfo]) -> list[tuple[str, str]]:
    return [(f"{m['name']} · {m['description']}", m["name"]) for m in methods]


def dataset_label(info: DatasetInfo) -> str:
    label = info["name"]
    if info.get("num_train"):
        label += (
            f" · {info['num_train']:,} images"
            if info.get("kind", "image") == "image"
            else f" · {info['num_train']:,} examples"
        )
    if not info.get("available", True):
        label += f" (unavailable: {info.get('reason') or 'not on disk'})"
    return label


def fits(info: DatasetInfo, modality: str | None) -> bool:
    """Whether a method of `modality` can train on the dataset `info` describes."""
    return modality is None or modality in info.get("modalities", [info.get("kind", modality)])


def dataset_choices(datasets: list[DatasetInfo], modality: str | None) -> list[tuple[str, str]]:
    """The datasets a method of `modality` can train on, unavailable ones marked."""
    fitting = [d for d in datasets if fits(d, modality)]
    return [(dataset_label(d), d["name"]) for d in fitting]


def pick_dataset(
    datasets: list[DatasetInfo],
    modality: str | None,
    current: str | None,
    preferred: str | None = None,
) -> str | None:
    """The dataset to show for a method: `preferred` (the method's own builtin) unless the
    user picked one of their own datasets that the method can use; else `current` when it
    fits, else the first available one."""
    fitting = [d for d in datasets if fits(d, modality)]
    names = [d["name"] for d in fitting]
    ready = {d["name"] for d in fitting if d.get("available", True)}
    builtin = {d["name"] for d in datasets if d.get("builtin", True)}
    if preferred in ready and (current is None or current in builtin or current not in names):
        return preferred
    if current in names:
        return current
    available = [d["name"] for d in fitting if d.get("available", True)]
    return (available or names or [None])[0]


def submit_form(
    studio: Studio,
    method: str,
    dataset: str,
    preset: str,
    seed: Any,
    values: dict[str, Any],
    evals: list[str] | None = None,
    eval_dataset: str | None = None,
) -> tuple[int | None, str]:
    """Start's logic: form values -> spec -> `studio.submit`. Returns (job id or None, the
    message to show beside the form). `values` maps field names (backbone included) to
    widget values; only those differing from the preset's defaults go into the spec.
    `evals` (protocols to run when the job completes) and `eval_dataset` go in when set."""
    try:
        fields = studio.method_form(method, preset)
        spec: JobSpec = {
            "method": method,
            "dataset": dataset,
            "preset": preset,
            "seed": clean_value(seed, "int"),
            "params": overrides(fields, values),
        }
        if evals:
            spec["evals"] = list(evals)
        if eval_dataset:
            spec["eval_dataset"] = eval_dataset
        job_id = studio.submit(spec)
    except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
        return None, error_note(error, "submit")
    return job_id, message(f"Job #{job_id} submitted.", "ok")


def eval_choices(protocols: list[ProtocolInfo]) -> list[tuple[str, str]]:
    labels = {
        "knn": "k-NN",
        "linear": "linear probe",
        "fewshot": "few-shot",
        "finetune": "fine-tune 1%/10% (slow)",
        "segmentation": "segmentation (ViT attention)",
        "reconstruction": "reconstruction (MAE PSNR)",
    }
    return [(labels.get(p["name"], p["name"]), p["name"]) for p in protocols]


def default_evals(modality: str | None) -> list[str]:
    return ["knn", "linear"] if modality == "image" else []


def eval_dataset_choices(datasets: list[DatasetInfo]) -> list[tuple[str, str]]:
    """Labelled image datasets; "" evaluates on the training dataset."""
    return [("same as training", "")] + [
        (d["name"], d["name"])
        for d in datasets
        if d.get("kind", "image") == "image" and d.get("labelled") and d.get("available", True)
    ]


def processes_note(info: HardwareInfo) -> str:
    """What the processes field can use here, e.g. '2 CPU cores, no GPU: up to 2 processes'."""
    gpus = info["cuda_devices"]
    if gpus:
        found = f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({gpus[0]['name']})"
    else:
        found = f"{info['cpu_cores']} CPU core{'s' if info['cpu_cores'] > 1 else ''}, no GPU"
    most = info["max_processes"]
    return f"{found}: up to {most} process{'es' if most > 1 else ''}"


def precision_note(info: HardwareInfo) -> str:
    """What precision "auto" means here, e.g. 'auto trains in fp32: this CPU emulates bf16'."""
    device = "this GPU" if info["cuda_devices"] else "this CPU"
    if info.get("fast_bf16"):
        return f"auto trains under bf16 autocast: {device} computes bf16 natively"
    return f"auto trains in fp32: {device} emulates bf16, many times slower"


def with_hardware(fields: list[FormField], notes: dict[str, str]) -> list[FormField]:
    """The form with each noted field's help (processes, precision) ending in what this
    machine offers."""
    return [
        FormField(**{**f, "help": f"{f['help']} Here: {notes[f['name']]}."})
        if f["name"] in notes
        else f
        for f in fields
    ]


def demo_text(plan: DemoPlan, hardware: str) -> str:
    """The line beside the demo-pack button: this machine, the seven runs and their time."""
    methods = ", ".join(job["method"] for job in plan["jobs"])
    return (
        f"**This machine:** {hardware}. **Demo pack:** the quick presets of {methods} "
        f"(image ones evaluated), queued one after another so every lens and the explorer "
        f"have a run of their own: {plan['note']}."
    )


def waiting_for(studio: Studio) -> int | None:
    running = [j["id"] for j in studio.jobs() if j["status"] == JobStatus.RUNNING]
    return running[0] if running else None


def latest_sample_text(samples: list[TextSample]) -> str:
    """'step 120: <text>' for the newest sample; T5 records show input, target and fill."""
    if not samples:
        return ""
    last = samples[-1]
    if "text" in last:
        return f"step {last['step']}: {last['text']}"
    parts = [f"{key}: {last[key]}" for key in ("input", "target", "prediction") if key in last]
    return f"step {last['step']}\n" + "\n".join(parts)


def button_states(status: str | None, owner: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Stop, Resume) interactivity for a job in `status`; never for a viewer (`owner`
    False), whose clicks the server would refuse anyway."""
    return (
        gr.update(interactive=owner and status in ACTIVE_STATUSES),
        gr.update(interactive=owner and status in RESUMABLE_STATUSES),
    )


class TrainTab:
    """Builds the tab inside the current Blocks context and holds its components."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.methods = {m["name"]: m for m in studio.methods()}
        info = studio.hardware()
        # Beside the processes and precision fields: what this machine offers.
        self.hardware_notes = {"processes": processes_note(info), "precision": precision_note(info)}
        self.forms = {name: self.method_form(name, "quick") for name in self.methods}
        self.form = ParamForm(self.forms)
        self.data_panel = DataPanel(studio)

    # ---- layout ------------------------------------------------------------------------
    def build(self) -> None:
        names = list(self.methods)
        first = "simclr" if "simclr" in names else names[0]
        info = self.methods[first]
        fields = self.forms[first]
        datasets = self.studio.datasets()
        backbone = next(f for f in fields if f["name"] == "backbone")
        # One screen for a demo: the form on the left (each field's help clamped to one line,
        # whole on hover), and on the right, sticky while the form scrolls, Start/Stop/Resume,
        # the status line and the charts: all in view at 1366x768 after Start.
        with gr.Row(equal_height=False, elem_classes=["ps-train"]):
            with gr.Column(scale=5, min_width=400, elem_classes=["ps-form"]):
                with gr.Row():
                    self.method = gr.Dropdown(
                        method_choices(list(self.methods.values())),
                        value=first,
                        label="Method",
                        info="Each method is one file in engine/methods/; its card is below.",
                        scale=3,
                        min_width=220,
                    )
                    self.dataset = gr.Dropdown(
                        dataset_choices(datasets, info["modality"]),
                        value=pick_dataset(
                            datasets, info["modality"], None, info.get("default_dataset")
                        ),
                        label="Dataset",
                        scale=2,
                        min_width=160,
                    )
                with gr.Row():
                    self.backbone = gr.Dropdown(
                        backbone["choices"] or [backbone["default"]],
                        value=backbone["default"],
                        label="Backbone",
                        info=backbone["help"],
                        min_width=120,
                    )
                    self.preset = gr.Dropdown(
                        info["presets"],
                        value="quick",
                        label="Preset",
                        info="quick: minutes on a laptop CPU; paper: the paper's recipe; "
                        "tiny: seconds, a smoke test.",
                        min_width=120,
                    )
                    self.seed = gr.Number(
                        0,
                        precision=0,
                        label="Seed",
                        minimum=0,
                        info="Same seed, same run.",
                        min_width=100,
                    )
                with gr.Accordion("About this method", open=False):
                    self.card = gr.Markdown(card_markdown(info))
                self.data_panel.build()
                with gr.Row(elem_classes=["ps-params"]):
                    self.form.render(main=True, fields=fields)
                with gr.Accordion("More settings", open=False):
                    with gr.Row(elem_classes=["ps-params"]):
                        self.form.render(main=False, fields=fields)
                with gr.Row():
                    self.evals = gr.CheckboxGroup(
                        eval_choices(self.studio.protocols()),
                        value=default_evals(info["modality"]),
                        interactive=info["modality"] == "image",
                        scale=3,
                        label="Evaluate when done",
                        elem_id="train-evals",
                        info="Scored on the test split; see them in the Runs tab beside "
                        "the pixels and random-network baselines.",
                    )
                    self.eval_dataset = gr.Dropdown(
                        eval_dataset_choices(datasets),
                        value="",
                        scale=2,
                        min_width=160,
                        label="Evaluate on",
                        info="A labelled image dataset.",
                    )
            with gr.Column(scale=6, min_width=480, elem_classes=["ps-live"]):
                with gr.Row(elem_classes=["ps-actions"]):
                    self.start_btn = gr.Button("Start", variant="primary", scale=2, min_width=100)
                    self.stop_btn = gr.Button(
                        "Stop", variant="stop", interactive=False, scale=1, min_width=80
                    )
                    self.resume_btn = gr.Button("Resume", interactive=False, scale=1, min_width=80)
                self.note = gr.HTML("", elem_classes=["ps-note"])
                self.panel = CurvePanel(IDLE_TEXT, "train")
                self.sample = gr.Textbox(
                    label="Latest sample the model wrote", lines=3, visible=False, interactive=False
                )
        # The demo pack (engine/demo.py) and what the studio found on this machine.
        with gr.Row(equal_height=True):
            gr.Markdown(
                demo_text(self.studio.demo_plan(), self.studio.hardware_line()),
                elem_classes=["ps-hint"],
            )
            self.demo_btn = gr.Button("Queue the demo pack", size="sm", scale=0, min_width=190)
        self.demo_note = gr.HTML("", elem_classes=["ps-note"])
        with gr.Accordion("Compare all methods", open=False):
            gr.Dataframe(
                cards_table(list(self.methods.values())),
                interactive=False,
                wrap=True,
                column_widths=["9%", "6%", "8%", "42%", "35%"],
            )
        self.timer = gr.Timer(POLL_S, active=False)
        self.sample_timer = gr.Timer(SAMPLE_POLL_S, active=False)
        self.follow_outputs = [
            *self.panel.outputs,
            self.timer,
            self.sample_timer,
            self.stop_btn,
            self.resume_btn,
        ]

    def wire(self, demo: gr.Blocks) -> None:
        private = dict(api_visibility="private")
        self.demo_btn.click(self.queue_demo, None, [self.demo_note], **private)
        # preprocess=False: the dataset's value is only a hint here (kept when it fits the new
        # method), and gradio's check of it against the choices saw the previous method's
        # list when methods were switched quickly, raising "captions is not in the list".
        self.method.input(
            self.on_method,
            [self.method, self.dataset, self.preset],
            [self.dataset, self.preset, self.backbone, *self.form.components],
            preprocess=False,
            **private,
        )
        self.method.input(
            lambda method: card_markdown(self.methods[method]),
            [self.method],
            [self.card],
            **private,
        )
        self.preset.input(
            self.on_preset,
            [self.method, self.preset],
            [self.backbone, *self.form.components],
            **private,
        )
        # preprocess=False: the raw widget values go to the engine, which checks bounds and
        # types and names the field in its message (gradio's own bound check would raise a
        # toast that names no field).
        self.start_btn.click(
            self.start,
            [
                self.method,
                self.dataset,
                self.preset,
                self.seed,
                self.backbone,
                *self.form.components,
                self.evals,
                self.eval_dataset,
            ],
            [self.note, *self.follow_outputs],
            preprocess=False,
            **private,
        )
        self.method.input(self.on_method_evals, [self.method], [self.evals], **private)
        self.timer.tick(
            self.tick,
            self.panel.inputs,
            self.follow_outputs,
            show_progress="hidden",
            concurrency_limit=None,
            **private,
        )
        self.stop_btn.click(self.stop, [self.panel.curves], [self.note], **private)
        self.resume_btn.click(
            self.resume, [self.panel.curves], [self.note, *self.follow_outputs], **private
        )
        self.panel.wire()
        self.sample_timer.tick(
            self.on_sample, [self.panel.curves], [self.sample], show_progress="hidden", **private
        )
        self.data_panel.wire(
            self.dataset,
            self.method,
            lambda method: dataset_choices(
                self.studio.datasets(), self.methods[method]["modality"]
            ),
        )
        demo.load(self.on_load, None, self.follow_outputs, show_progress="hidden", **private)

    # ---- handlers ----------------------------------------------------------------------
    def queue_demo(self) -> str:
        """Queue the seven showcase runs; the note says which jobs and how long."""
        try:
            plan = self.studio.demo_pack()
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            return error_note(error, "queue the demo pack")
        ids = [job["job_id"] for job in plan["jobs"]]
        return message(
            f"Queued jobs #{ids[0]} to #{ids[-1]} "
            f"({', '.join(job['method'] for job in plan['jobs'])}): {plan['note']}. "
            "The Jobs tab follows them; each lens opens on its run once it is done.",
            "ok",
        )

    def method_form(self, method: str, preset: str) -> list[FormField]:
        return with_hardware(self.studio.method_form(method, preset), self.hardware_notes)

    def on_method(self, method: str, dataset: str | None, preset: str | None) -> Updates:
        info = self.methods[method]
        preset = preset if preset in info["presets"] else "quick"
        fields = self.method_form(method, preset)
        datasets = self.studio.datasets()
        backbone = next(f for f in fields if f["name"] == "backbone")
        return {
            self.dataset: gr.update(
                choices=dataset_choices(datasets, info["modality"]),
                value=pick_dataset(
                    datasets, info["modality"], dataset, info.get("default_dataset")
                ),
            ),
            self.preset: gr.update(choices=info["presets"], value=preset),
            self.backbone: gr.update(
                choices=backbone["choices"] or [backbone["default"]],
                value=backbone["default"],
                info=backbone["help"],
            ),
            **self.form.updates(fields),
        }

    def on_method_evals(self, method: str) -> Any:
        """Evaluations need image features: off (and locked) for text methods."""
        modality = self.methods[method]["modality"]
        return gr.update(value=default_evals(modality), interactive=modality == "image")

    def on_preset(self, method: str, preset: str) -> Updates:
        fields = self.method_form(method, preset)
        backbone = next(f for f in fields if f["name"] == "backbone")
        return {self.backbone: gr.update(value=backbone["default"]), **self.form.updates(fields)}

    def start(
        self, method: str, dataset: str, preset: str, seed: Any, backbone: str, *raw: Any
    ) -> Updates:
        try:
            fields = self.studio.method_form(method, preset)
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            return {self.note: error_note(error, "start")}
        count = len(self.form.components)  # then the evaluations and their dataset, if sent
        extra = list(raw[count:]) + [None, None]
        values = {"backbone": backbone, **self.form.values(fields, list(raw[:count]))}
        job_id, note = submit_form(
            self.studio,
            method,
            dataset,
            preset,
            seed,
            values,
            evals=extra[0],
            eval_dataset=extra[1],
        )
        if job_id is None:
            return {self.note: note}
        return {self.note: note, **self.follow(job_id)}

    def buttons(self, status: str | None) -> Updates:
        stop, resume = button_states(status, may_change(self.studio))
        return {self.stop_btn: stop, self.resume_btn: resume}

    def follow(self, job_id: int | None) -> Updates:
        """Updates of `follow_outputs` that make the tab follow `job_id` from scratch (none
        for no job)."""
        if job_id is None:
            return {}
        curves, job, _ = poll(self.studio, empty_curves(int(job_id)))
        wait = waiting_for(self.studio) if job["status"] == JobStatus.QUEUED else None
        curves["status"] = job["status"]
        text = (self.methods.get(job["method"]) or {}).get("modality") == "text"
        return {
            **self.panel.values(curves, job, True, waiting_for=wait, reset=True),
            self.timer: gr.Timer(POLL_S, active=job["status"] not in TERMINAL_STATUSES),
            self.sample_timer: gr.Timer(active=text),
            **self.buttons(job["status"]),
        }

    def tick(self, curves: Curves, *view: Any) -> Updates:
        """A refresh of the followed job; `view` is the chart controls' values
        (`CurvePanel.view`)."""
        if curves.get("job_id") is None:
            return {self.timer: gr.Timer(active=False)}
        try:
            curves, job, changed = poll(self.studio, curves)
        except Exception as error:  # noqa: BLE001 - the job vanished, or a bug (logged)
            note = error_text(error, f"polling job {curves.get('job_id')}")
            return {
                self.panel.curves: curves,
                self.panel.status: message(f"Lost the job: {note}", "error"),
                self.timer: gr.Timer(active=False),
            }
        wait = waiting_for(self.studio) if job["status"] == JobStatus.QUEUED else None
        status_changed = job["status"] != curves.get("status")
        curves["status"] = job["status"]
        out = self.panel.values(curves, job, changed, *view, waiting_for=wait)
        if job["status"] in TERMINAL_STATUSES:
            out[self.timer] = gr.Timer(active=False)
        elif not curves.get("slow") and len(curves["points"].get("loss", ())) >= FAST_POINTS:
            curves["slow"] = True
            out[self.timer] = gr.Timer(SLOW_POLL_S)
        if status_changed:
            out.update(self.buttons(job["status"]))
        return out

    def on_sample(self, curves: Curves) -> Any:
        """The newest text sample of the followed job (GPT generations, T5 fills), if any."""
        job_id = curves.get("job_id")
        if job_id is None:
            return gr.skip()
        sample = latest_sample_text(self.studio.samples(job_id))
        return gr.update(value=sample, visible=True) if sample else gr.update(visible=False)

    def stop(self, curves: Curves) -> str:
        job_id = curves.get("job_id")
        if job_id is None:
            return message("No job to stop.", "warn")
        try:
            outcome = self.studio.cancel(job_id)
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            return error_note(error, "stop")
        if outcome == "stopping":
            return message(
                f"Job #{job_id} stops after its current step and keeps a checkpoint.", "info"
            )
        return message(f"Job #{job_id} {outcome}.", "info")

    def resume(self, curves: Curves) -> Updates:
        job_id = curves.get("job_id")
        if job_id is None:
            return {self.note: message("No job to resume.", "warn")}
        try:
            self.studio.resume(job_id)
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            return {self.note: error_note(error, "resume")}
        return {
            self.note: message(
                f"Job #{job_id} queued again; it continues from its last checkpoint.", "ok"
            ),
            **self.follow(job_id),
        }

    def on_load(self) -> Any:
        """A (re)loaded page follows the running job, else the newest queued one, if any."""
        jobs = self.studio.jobs()
        running = [j["id"] for j in jobs if j["status"] == JobStatus.RUNNING]
        queued = [j["id"] for j in jobs if j["status"] == JobStatus.QUEUED]
        target = max(running) if running else (max(queued) if queued else None)
        return respond(self.follow(target))
