"""'Add your own images' under the Train tab's dataset picker: a zip upload or a server folder."""
from __future__ import annotations

from typing import Any

import gradio as gr

from webapp.figures import message


def add_dataset(studio: Any, upload: Any, folder: str | None, name: str | None
                ) -> tuple[str | None, str]:
    """The handler's logic: returns (the new dataset's name or None, the message to show)."""
    upload_path = getattr(upload, "name", upload) if upload else None
    source = upload_path or (folder or "").strip()
    if not source:
        return None, message("Upload a .zip of images or type a folder on the server.", "warn")
    if not (name or "").strip():
        return None, message("Give the dataset a name (a-z, 0-9, '_' or '-').", "warn")
    try:
        info = studio.add_image_dataset(source, name)
    except ValueError as error:  # DatasetError: names the problem and what to do
        return None, message(str(error), "error")
    return info["name"], message(info["message"], "ok")


class DataPanel:
    def __init__(self, studio: Any) -> None:
        self.studio = studio

    def build(self) -> None:
        with gr.Accordion("Add your own images", open=False):
            gr.Markdown("A zip or a folder of images; subfolders become labels (so evaluation "
                        "works), a flat folder still trains. Images are checked and cached "
                        "once: unreadable files are skipped and counted.")
            self.upload = gr.File(label="Zip of images", file_types=[".zip"], height=90)
            with gr.Row():
                self.folder = gr.Textbox(label="…or a folder on the server",
                                         placeholder="/data/my-photos", scale=3)
                self.name = gr.Textbox(label="Dataset name", placeholder="my-photos", scale=2)
            self.add_btn = gr.Button("Add dataset", size="sm")
            self.note = gr.HTML("")

    def wire(self, dataset: gr.Dropdown, method: gr.Dropdown, choices_for: Any) -> None:
        """`choices_for(method)` gives the dataset dropdown's choices for that method."""

        def on_add(upload: Any, folder: str, name: str, method_name: str) -> list:
            added, note = add_dataset(self.studio, upload, folder, name)
            if added is None:
                return [note, gr.skip()]
            return [note, gr.update(choices=choices_for(method_name), value=added)]

        self.add_btn.click(on_add, [self.upload, self.folder, self.name, method],
                           [self.note, dataset], api_visibility="private")
