"""'Add your own data' under the Train tab's dataset picker: images (with or without captions),
a UTF-8 text file, or a Hugging Face dataset. Each handler's logic is a plain function.
An uploaded file is deleted once its import was tried, added or refused (`_discard_upload`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from engine.contract import Studio
from webapp.errors import error_note
from webapp.figures import message

NAME_HINT = "Give the dataset a name (a-z, 0-9, '_' or '-')."


def _path(upload: Any) -> str | None:
    return getattr(upload, "name", upload) if upload else None


def _discard_upload(upload: Any) -> None:
    """Delete an uploaded file and its folder, if now empty, from Gradio's upload folder (the
    import read it already). A path outside that folder, one the user typed, is never touched."""
    from gradio.utils import get_upload_folder

    if not _path(upload):
        return
    try:
        uploads = Path(get_upload_folder()).resolve()
        path = Path(_path(upload)).resolve()
        if not path.is_relative_to(uploads) or path == uploads or not path.is_file():
            return
        path.unlink()
        if path.parent != uploads:
            path.parent.rmdir()  # Gradio keeps each upload in a folder of its own
    except OSError:
        pass  # not empty, or already gone: nothing of ours to remove


def _added(call: Any, upload: Any = None) -> tuple[str | None, str]:
    """Run an import; the upload it read, if any, is deleted after, whatever the outcome."""
    if _path(upload) and not Path(_path(upload)).exists():
        return None, message(
            "The uploaded file is gone (each upload is deleted once it was "
            "added or refused); upload it again.",
            "warn",
        )
    try:
        info = call()
    except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
        return None, error_note(error, "adding a dataset")
    finally:
        _discard_upload(upload)
    return info["name"], message(info["message"], "ok")


def _image_size(value: Any) -> Any:
    """The Images tab's size field: None when empty (automatic), a whole number as an int;
    anything else goes to the engine as it is, which refuses it naming the range."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def add_dataset(
    studio: Studio,
    upload: Any,
    folder: str | None,
    name: str | None,
    image_size: Any = None,
    on_progress: Any = None,
) -> tuple[str | None, str]:
    """Images: returns (the new dataset's name or None, the message to show). `image_size`
    is the storage size in px (None: automatic); `on_progress(fraction, text)` hears the
    decoding."""
    source = _path(upload) or (folder or "").strip()
    if not source:
        return None, message("Upload a .zip of images or type a folder on the server.", "warn")
    if not (name or "").strip():
        return None, message(NAME_HINT, "warn")
    size = _image_size(image_size)
    return _added(lambda: studio.add_image_dataset(source, name, size, on_progress), upload)


def add_text(
    studio: Studio, upload: Any, path: str | None, name: str | None
) -> tuple[str | None, str]:
    """A UTF-8 text file, uploaded or on the server."""
    source = _path(upload) or (path or "").strip()
    if not source:
        return None, message("Upload a UTF-8 text file or type a file on the server.", "warn")
    if not (name or "").strip():
        return None, message(NAME_HINT, "warn")
    return _added(lambda: studio.add_text_dataset(source, name), upload)


def add_hf(
    studio: Studio, ref: str | None, column: str | None, split: str | None, name: str | None
) -> tuple[str | None, str]:
    """One text column of a Hugging Face dataset (a saved folder, or a Hub name online)."""
    ref = (ref or "").strip()
    if not ref:
        return None, message(
            "Name a Hugging Face dataset: a folder saved with save_to_disk, or a Hub name.", "warn"
        )
    if not (name or "").strip():
        return None, message(NAME_HINT, "warn")
    return _added(lambda: studio.add_text_dataset(ref, name, column or None, split or None))


def look_up_columns(
    studio: Studio, ref: str | None, split: str | None
) -> tuple[list[str], str, str]:
    """(the text columns, the default one, a message) of a Hugging Face dataset."""
    if not (ref or "").strip():
        return [], "", message("Name a Hugging Face dataset first.", "warn")
    try:
        info = studio.describe_hf_dataset(ref.strip(), (split or "").strip() or None)
    except Exception as error:  # noqa: BLE001 - the user's message, or a bug logged
        return [], "", error_note(error, "looking up columns")
    if not info["columns"]:
        return [], "", message(f"Split '{info['split']}' has no text column.", "error")
    return (
        info["columns"],
        info["column"],
        message(f"Split '{info['split']}': text columns {', '.join(info['columns'])}.", "info"),
    )


# engine.data.tv_datasets.SUPPORTED (that module imports torch; a test keeps the two equal).
TORCHVISION_DATASETS = (
    "CIFAR10",
    "CIFAR100",
    "STL10",
    "MNIST",
    "FashionMNIST",
    "SVHN",
    "Imagenette",
)


def add_torchvision(
    studio: Studio,
    dataset_name: str | None,
    root: str | None,
    download: bool,
    image_size: Any,
    name: str | None,
    on_progress: Any = None,
) -> tuple[str | None, str]:
    """A torchvision dataset from its layout in a server folder (never an upload)."""
    if not dataset_name:
        return None, message("Pick a torchvision dataset.", "warn")
    if not (root or "").strip():
        return None, message("Type the folder on the server that holds it (its root).", "warn")
    name = (name or "").strip() or dataset_name.lower()
    size = _image_size(image_size)
    return _added(
        lambda: studio.add_torchvision_dataset(
            name, root.strip(), dataset_name, download is True, size, on_progress
        )
    )


def add_hf_images(
    studio: Studio,
    ref: str | None,
    split: str | None,
    image_column: str | None,
    label_column: str | None,
    image_size: Any,
    name: str | None,
    on_progress: Any = None,
) -> tuple[str | None, str]:
    """A Hugging Face image dataset (a saved folder, or a Hub name online)."""
    ref = (ref or "").strip()
    if not ref:
        return None, message(
            "Name a Hugging Face dataset: a folder saved with save_to_disk, or a Hub name.", "warn"
        )
    if not (name or "").strip():
        return None, message(NAME_HINT, "warn")
    size = _image_size(image_size)
    return _added(
        lambda: studio.add_hf_image_dataset(
            ref,
            name,
            (split or "").strip() or None,
            (image_column or "").strip() or None,
            (label_column or "").strip() or None,
            size,
            on_progress,
        )
    )


class DataPanel:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def build(self) -> None:
        # Typed server paths only where the studio may read some (PRETEXT_DATA_ROOTS on a
        # hosted studio); the handlers refuse them anyway.
        paths = getattr(self.studio, "paths", None)
        on_server = paths is None or paths.server_paths_allowed
        where = (
            ""
            if paths is None or not paths.restricted
            else (" Inside: " + ", ".join(str(root) for root in paths.roots) + ".")
        )
        with gr.Accordion("Add your own data", open=False):
            self.name = gr.Textbox(
                label="Dataset name",
                placeholder="my-data",
                info="How it appears in every dataset list and the CLI.",
            )
            with gr.Tabs():
                with gr.Tab("Images"):
                    gr.Markdown(
                        "A zip or a folder of images; subfolders become labels (so "
                        "evaluation works), a flat folder still trains. A "
                        "`captions.csv` (columns `file,caption`) or a `.txt` beside "
                        "each image adds captions, so CLIP can train on it. Images are "
                        "checked and decoded once into a store on disk: unreadable files "
                        "are skipped and counted. Adding the same files again is instant."
                    )
                    self.upload = gr.File(label="Zip of images", file_types=[".zip"], height=90)
                    self.folder = gr.Textbox(
                        label="…or a folder on the server",
                        placeholder="/data/my-photos",
                        visible=on_server,
                        info=where.strip() or None,
                    )
                    self.image_size = gr.Number(
                        label="Image size (px)",
                        value=None,
                        minimum=32,
                        maximum=512,
                        precision=0,
                        info="The side images are stored at, 32-512; each is resized and "
                        "centre-cropped to a square. Empty: their median shorter side, at "
                        "most 256.",
                    )
                    self.add_btn = gr.Button("Add images", size="sm")
                with gr.Tab("Text file"):
                    gr.Markdown(
                        "A UTF-8 text file for BERT, GPT or T5: paragraphs separated "
                        "by blank lines (or one document per line). Up to 50 MB; "
                        "longer text is cut to 20 million characters before "
                        "tokenisation."
                    )
                    self.text_upload = gr.File(
                        label="Text file", file_types=[".txt", ".md", ".text", ".rst"], height=90
                    )
                    self.text_path = gr.Textbox(
                        label="…or a file on the server",
                        placeholder="/data/notes.txt",
                        visible=on_server,
                        info=where.strip() or None,
                    )
                    self.text_btn = gr.Button("Add text", size="sm")
                with gr.Tab("Hugging Face dataset"):
                    gr.Markdown(
                        "One text column of a dataset from the `datasets` library: "
                        + ("a folder written by `save_to_disk`, or " if on_server else "")
                        + "a Hub name when this server is online."
                        + where
                    )
                    self.hf_ref = gr.Textbox(
                        label="Dataset", placeholder="/data/saved-dataset or user/name"
                    )
                    with gr.Row():
                        self.hf_split = gr.Textbox(
                            label="Split", placeholder="train", min_width=100
                        )
                        self.hf_column = gr.Dropdown(
                            [],
                            label="Text column",
                            allow_custom_value=True,
                            min_width=140,
                            info="Empty: 'text', else the only text column.",
                        )
                    with gr.Row():
                        self.hf_look = gr.Button("Look up columns", size="sm")
                        self.hf_btn = gr.Button("Add dataset", size="sm")
                with gr.Tab("Hugging Face images"):
                    gr.Markdown(
                        "An image dataset from the `datasets` library: "
                        + ("a folder written by `save_to_disk`, or " if on_server else "")
                        + "a Hub name when this server is online. The images are the "
                        "`Image` column, the labels a `ClassLabel` column; test is its "
                        "`test` split, else a seeded 10% held out." + where
                    )
                    self.hfi_ref = gr.Textbox(
                        label="Dataset", placeholder="/data/saved-images or user/name"
                    )
                    with gr.Row():
                        self.hfi_split = gr.Textbox(label="Split", placeholder="train")
                        self.hfi_image = gr.Textbox(label="Image column", placeholder="auto")
                        self.hfi_label = gr.Textbox(label="Label column", placeholder="auto")
                        self.hfi_size = gr.Number(
                            label="Image size (px)",
                            value=None,
                            minimum=32,
                            maximum=512,
                            precision=0,
                            info="32-512; empty: median shorter side, at most 256.",
                        )
                    self.hfi_btn = gr.Button("Add image dataset", size="sm")
                with gr.Tab("torchvision"):
                    gr.Markdown(
                        "A torchvision dataset from a folder on the server in the layout "
                        "torchvision downloads (CIFAR's `cifar-10-batches-py/`, "
                        "`stl10_binary/`, `MNIST/raw/`, SVHN's `.mat` files, Imagenette's "
                        "`train/` and `val/`). STL-10 also adds `NAME-unlabeled` (its "
                        "100,000 unlabelled images) for pretraining."
                        + (where if on_server else " Reading server folders is off here.")
                    )
                    with gr.Row():
                        self.tv_dataset = gr.Dropdown(
                            list(TORCHVISION_DATASETS), value="CIFAR10", label="Dataset"
                        )
                        self.tv_size = gr.Number(
                            label="Image size (px)",
                            value=None,
                            minimum=32,
                            maximum=512,
                            precision=0,
                            info="32-512; empty: its native size.",
                        )
                    self.tv_root = gr.Textbox(
                        label="Root folder on the server",
                        placeholder="/data/torchvision",
                        visible=on_server,
                        info=where.strip() or None,
                    )
                    self.tv_download = gr.Checkbox(
                        label="Download it into the root first (needs the network)",
                        value=False,
                        visible=on_server,
                    )
                    self.tv_btn = gr.Button("Add torchvision dataset", size="sm")
            self.note = gr.HTML("")
        # Disabled for a viewer (webapp/access.py); the server refuses their clicks anyway.
        self.owner_controls = [
            self.add_btn,
            self.text_btn,
            self.hf_btn,
            self.hf_look,
            self.hfi_btn,
            self.tv_btn,
        ]

    def wire(self, dataset: gr.Dropdown, method: gr.Dropdown, choices_for: Any) -> None:
        """`choices_for(method)` gives the dataset dropdown's choices for that method."""
        private = dict(api_visibility="private")

        def refresh(added: str | None, note: str, method_name: str) -> list:
            if added is None:
                return [note, gr.skip()]
            choices = choices_for(method_name)
            if added not in [value for _, value in choices]:
                note += message(
                    f"'{added}' does not fit {method_name}: pick a method that "
                    "trains on it (text: bert, gpt, t5; captions: clip).",
                    "info",
                )
                return [note, gr.update(choices=choices)]
            return [note, gr.update(choices=choices, value=added)]

        # An upload is deleted on the server once imported or refused (add_dataset, add_text):
        # the widget is cleared with it, so it never shows a file that is gone.
        def on_images(
            upload: Any,
            folder: str,
            name: str,
            size: Any,
            method_name: str,
            progress: gr.Progress = gr.Progress(),
        ) -> list:
            def report(fraction: float, text: str) -> None:
                progress(fraction, desc=text)

            added = add_dataset(self.studio, upload, folder, name, size, report)
            out = refresh(*added, method_name)
            return [*out, None if upload else gr.skip()]

        def on_text(upload: Any, path: str, name: str, method_name: str) -> list:
            out = refresh(*add_text(self.studio, upload, path, name), method_name)
            return [*out, None if upload else gr.skip()]

        def on_hf(ref: str, column: str, split: str, name: str, method_name: str) -> list:
            return refresh(*add_hf(self.studio, ref, column, split, name), method_name)

        def on_look(ref: str, split: str) -> list:
            columns, default, note = look_up_columns(self.studio, ref, split)
            return [note, gr.update(choices=columns, value=default)]

        self.add_btn.click(
            on_images,
            [self.upload, self.folder, self.name, self.image_size, method],
            [self.note, dataset, self.upload],
            **private,
        )
        self.text_btn.click(
            on_text,
            [self.text_upload, self.text_path, self.name, method],
            [self.note, dataset, self.text_upload],
            **private,
        )
        self.hf_btn.click(
            on_hf,
            [self.hf_ref, self.hf_column, self.hf_split, self.name, method],
            [self.note, dataset],
            **private,
        )
        self.hf_look.click(
            on_look, [self.hf_ref, self.hf_split], [self.note, self.hf_column], **private
        )

        def on_hf_images(
            ref: str,
            split: str,
            image: str,
            label: str,
            size: Any,
            name: str,
            method_name: str,
            progress: gr.Progress = gr.Progress(),
        ) -> list:
            def report(fraction: float, text: str) -> None:
                progress(fraction, desc=text)

            added = add_hf_images(self.studio, ref, split, image, label, size, name, report)
            return refresh(*added, method_name)

        def on_torchvision(
            dataset_name: str,
            root: str,
            download: bool,
            size: Any,
            name: str,
            method_name: str,
            progress: gr.Progress = gr.Progress(),
        ) -> list:
            def report(fraction: float, text: str) -> None:
                progress(fraction, desc=text)

            added = add_torchvision(self.studio, dataset_name, root, download, size, name, report)
            return refresh(*added, method_name)

        self.hfi_btn.click(
            on_hf_images,
            [
                self.hfi_ref,
                self.hfi_split,
                self.hfi_image,
                self.hfi_label,
                self.hfi_size,
                self.name,
                method,
            ],
            [self.note, dataset],
            **private,
        )
        self.tv_btn.click(
            on_torchvision,
            [self.tv_dataset, self.tv_root, self.tv_download, self.tv_size, self.name, method],
            [self.note, dataset],
            **private,
        )
