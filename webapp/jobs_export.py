"""The Jobs tab's export and push block: the selected job as a zip to download (a folder that
loads without the studio, with its model card), or pushed to a Hugging Face Hub model repo.

The token field is a password field: its value goes to `studio.push` and nowhere else (not
logged, not stored, not echoed; the Hub's refusals come back as one line without it). On a
public server both buttons answer a viewer with the sign-in message (`GuardedStudio`); in open
mode (every visitor an owner) a push needs a pasted token, never the server's HF_TOKEN.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import gradio as gr

from engine.contract import Studio
from webapp.errors import error_note
from webapp.figures import Updates, message


class ExportPanel:
    """Export and Push for the job selected in the Jobs tab (`wire(selected)`)."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def build(self) -> None:
        with gr.Accordion("Export or push to the Hugging Face Hub", open=False):
            gr.Markdown(
                "A folder that loads without the studio (transformers `from_pretrained`, or "
                "plain torch with its `load.py`), with a model card: the method, the training "
                "settings, the evaluation against the baselines and the loss curve.",
                elem_classes=["ps-hint"],
            )
            with gr.Row():
                self.export_btn = gr.Button("Export as zip", size="sm", scale=0, min_width=140)
                self.download = gr.DownloadButton(
                    "Download", visible=False, size="sm", scale=0, min_width=240
                )
            with gr.Row():
                self.repo = gr.Textbox(
                    label="Hub repo", placeholder="USER/NAME", max_lines=1, scale=2
                )
                self.token = gr.Textbox(
                    label="Hugging Face write token",
                    placeholder="hf_... (or leave empty: HF_TOKEN on the server)",
                    type="password",
                    max_lines=1,
                    scale=2,
                )
                self.private = gr.Checkbox(label="private repo", value=True, scale=0, min_width=120)
                self.push_btn = gr.Button("Push", size="sm", scale=0, min_width=90)
            self.note = gr.HTML("", elem_classes=["ps-note"])

    def wire(self, selected: gr.State) -> None:
        private = dict(api_visibility="private", show_progress="minimal")
        self.export_btn.click(self.export, [selected], [self.note, self.download], **private)
        self.push_btn.click(
            self.push, [selected, self.repo, self.token, self.private], [self.note], **private
        )

    # ---- handlers ----------------------------------------------------------------------
    def export(self, job_id: int | None) -> Updates:
        hidden = gr.DownloadButton(visible=False)
        if job_id is None:
            return {self.note: message("Select a job first.", "warn"), self.download: hidden}
        try:
            result = self.studio.export(job_id, make_zip=True)
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            return {self.note: error_note(error, "export"), self.download: hidden}
        # Gradio serves files from its temporary folder; the export stays in <home>/exports.
        archive = Path(result["zip"] or "")
        served = Path(tempfile.mkdtemp(prefix="pretext-export-")) / archive.name
        shutil.copyfile(archive, served)
        text = (
            f"Job #{job_id} exported at step {result['step']}: {', '.join(result['files'])} "
            f"(on the server: {result['folder']})."
        )
        return {
            self.note: message(text, "ok"),
            self.download: gr.DownloadButton(
                f"Download {archive.name}", value=str(served), visible=True
            ),
        }

    def push(self, job_id: int | None, repo: str, token: str, private: bool) -> str:
        if job_id is None:
            return message("Select a job first.", "warn")
        access = getattr(self.studio, "access", None)
        if not (token or "").strip() and getattr(access, "mode", None) == "open":
            # --open makes every visitor an owner: the server's own token is not theirs to use.
            return message(
                "Paste your own Hugging Face write token: this open studio does not lend "
                "the server's token to visitors.",
                "warn",
            )
        try:
            result = self.studio.push(job_id, repo, token=token or None, private=private is True)
        except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
            return error_note(error, "push")
        return message(f"Job #{job_id} (step {result['step']}) pushed to {result['url']}.", "ok")
