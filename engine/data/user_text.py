"""The user's own text: an uploaded UTF-8 file, or a Hugging Face dataset's text column.

Either becomes a corpus stored once as `<home>/datasets/<name>/corpus.txt`, one document per
line, and `register_user_corpus` adds it to the catalog (`engine.data.catalog`) as a
`kind="text"` dataset like `captions` and `pydocs` (the text methods read it with
`engine.data.text.corpus_texts`).

- A text file: at most `MAX_FILE_BYTES`; strict UTF-8 (the first undecodable byte is reported
  with its line and column; a UTF-8 BOM is dropped); an empty or binary-looking file is refused.
  Paragraphs separated by blank lines are documents (wrapped lines joined); a file with no
  blank line has one document per line.
- A Hugging Face dataset (the `datasets` library): a folder written by `save_to_disk`, or a Hub
  name when the Hub can be reached; offline, a Hub name is looked up in the local cache only and
  a missing one fails at once with one message (no retries). One string column is the text:
  the one asked for, else `text`, else the only string column.

Both are cut to `MAX_CORPUS_CHARS` at import, before any tokenisation, and the report says so.
A file or dataset that cannot be read is one `DatasetError` naming it; the corpus is written to
a scratch folder and moved into place only when complete (`user_data.staged_dataset`), so a
failed import leaves nothing behind and keeps an earlier dataset of the same name.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.data import text
from engine.data.catalog import DatasetSource, register_dataset
from engine.data.user_data import check_name, decode_utf8, staged_dataset, stored_file_check
from engine.errors import DatasetError

MAX_FILE_BYTES = 50 * 1024**2  # an uploaded text file
MAX_CORPUS_CHARS = 20_000_000  # a stored corpus is cut here, before tokenisation
CORPUS_FILE = "corpus.txt"
TEXT_SUFFIXES = {".txt", ".text", ".md", ".rst"}
HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class TextReport:
    name: str
    origin: str  # "file" or "huggingface"
    num_documents: int
    num_train: int
    num_test: int
    num_chars: int
    cut_from: int  # characters before the cut; 0 when nothing was cut
    detail: str = ""  # e.g. "column 'text' of split 'train'"

    def message(self) -> str:
        source = "text file" if self.origin == "file" else "Hugging Face dataset"
        out = (
            f"Added text dataset '{self.name}' from a {source}"
            f"{' (' + self.detail + ')' if self.detail else ''}: {self.num_documents:,} "
            f"documents ({self.num_train:,} train, {self.num_test:,} test), "
            f"{self.num_chars:,} characters."
        )
        if self.cut_from:
            out += (
                f" The text ({self.cut_from:,} characters) was cut to the first "
                f"{MAX_CORPUS_CHARS:,}, before tokenisation."
            )
        return out


def split_documents(content: str) -> list[str]:
    """Paragraphs (blank-line separated, wrapped lines joined) or, with no blank line, lines;
    whitespace collapsed, empty ones dropped."""
    lines = content.splitlines()
    if any(not line.strip() for line in lines):
        chunks = re.split(r"\n[ \t\r\f\v]*\n", content.replace("\r\n", "\n"))
    else:
        chunks = lines
    return [doc for doc in (" ".join(chunk.split()) for chunk in chunks) if doc]


def write_corpus(documents: list[str], out_dir: Path) -> None:
    """One document per line in `out_dir/corpus.txt`, written then renamed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".corpus-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(documents) + "\n")
    os.replace(tmp, out_dir / CORPUS_FILE)


def _report(
    name: str, origin: str, documents: list[str], cut_from: int, detail: str = ""
) -> TextReport:
    test = sum(1 for i in range(len(documents)) if text.is_test_index(i))
    return TextReport(
        name,
        origin,
        len(documents),
        len(documents) - test,
        test,
        sum(len(d) for d in documents),
        cut_from,
        detail,
    )


def _store(
    name: str, origin: str, documents: list[str], datasets_dir: Path, detail: str = ""
) -> TextReport:
    if not documents:
        raise DatasetError("the text is empty (only whitespace): there is nothing to train on")
    total = sum(len(d) + 1 for d in documents)
    kept = text.cut_to_chars(documents, MAX_CORPUS_CHARS)
    with staged_dataset(datasets_dir, name) as (staged, _):
        write_corpus(kept, staged)
    return _report(name, origin, kept, total if total > MAX_CORPUS_CHARS else 0, detail)


def import_text_file(source: str | os.PathLike, name: str, datasets_dir: Path) -> TextReport:
    """Check and store a UTF-8 text file as corpus `name`."""
    name = check_name(name)
    path = Path(source).expanduser()
    if not path.is_file():
        raise DatasetError(f"{path} is not a file; give a UTF-8 text file (.txt)")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DatasetError(f"{path.name} could not be read ({exc.strerror or exc})") from None
    if size == 0:
        raise DatasetError(f"{path.name} is empty: there is nothing to train on")
    if size > MAX_FILE_BYTES:
        raise DatasetError(
            f"{path.name} is {size / 1024**2:.1f} MB, over the "
            f"{MAX_FILE_BYTES // 1024**2} MB limit for a text file; cut it or "
            "save it as a Hugging Face dataset and add that"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path.name} could not be read ({exc.strerror or exc})") from None
    content = decode_utf8(data, path.name)
    if "\x00" in content:
        line = content.count("\n", 0, content.index("\x00")) + 1
        raise DatasetError(
            f"{path.name} holds a NUL byte on line {line}: it looks like a binary file, not text"
        )
    return _store(name, "file", split_documents(content), datasets_dir)


def is_text_source(source: str | os.PathLike) -> bool:
    """Whether `datasets --add SOURCE` means text: a file other than a .zip, a folder saved
    with `save_to_disk`, or a Hub-style name that is no path here. Else it means images."""
    path = Path(source).expanduser()
    if path.is_file():
        return path.suffix.lower() != ".zip"
    if path.is_dir():
        return is_saved_dataset(path)
    text_form = str(source)
    return bool(HUB_NAME.match(text_form)) and not text_form.startswith((".", "~"))


# ---- Hugging Face datasets ----------------------------------------------------------------


def datasets_library():
    try:
        import datasets
    except ImportError:
        raise DatasetError(
            "the `datasets` library is not installed; `pip install -r requirements.txt` installs it"
        ) from None
    return datasets


def is_saved_dataset(path: Path) -> bool:
    """Whether `path` is a folder `save_to_disk` wrote (a Dataset or a DatasetDict)."""
    return path.is_dir() and any(
        (path / f).exists() for f in ("dataset_dict.json", "state.json", "dataset_info.json")
    )


def open_hf_dataset(ref: str, split: str | None = None) -> tuple[Any, str]:
    """(a Dataset or IterableDataset, the split used) for a saved folder or a Hub name."""
    loaded = load_hf(ref, "stanfordnlp/imdb", stream=True)  # online: only rows up to the cap
    path = Path(ref).expanduser()
    return _pick_split(loaded, split, str(path) if path.exists() else ref)


def load_hf(ref: str, example: str, stream: bool = False) -> Any:
    """A saved folder (`save_to_disk`) or a Hub name -> what `datasets` loads (a DatasetDict
    or a Dataset; streamed from the Hub when `stream`). Offline, a Hub name is read from the
    local cache only and fails at once when it is not there; `example` is a Hub name the
    error message offers."""
    datasets = datasets_library()
    from engine.hub import hub_reachable

    path = Path(ref).expanduser()
    if path.exists():
        if not is_saved_dataset(path):
            raise DatasetError(
                f"{path} is not a dataset saved with `save_to_disk` (no "
                "dataset_dict.json or state.json in it)"
            )
        try:
            return datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise DatasetError(f"{path} could not be read as a saved dataset ({exc})") from None
    if not HUB_NAME.match(ref) or ref.startswith((".", "~")):
        raise DatasetError(
            f"{ref} is neither a folder on the server nor a Hugging Face "
            f"dataset name such as '{example}'"
        )
    if not hub_reachable():
        if not datasets.config.HF_HUB_OFFLINE:
            raise DatasetError(offline_message(ref))
        try:  # offline: the local cache only, which fails at once when the dataset is absent
            return datasets.load_dataset(ref)
        except Exception:  # noqa: BLE001 - any failure here means "not in the cache"
            raise DatasetError(offline_message(ref)) from None
    try:
        return datasets.load_dataset(ref, streaming=stream)
    except Exception as exc:  # noqa: BLE001 - the Hub's errors vary; the message carries it
        raise DatasetError(f"the Hugging Face dataset {ref!r} could not be loaded: {exc}") from None


def offline_message(ref: str) -> str:
    return (
        f"{ref!r} is not a folder on this server and the Hugging Face Hub cannot be reached "
        "(offline), nor is it in the local cache; on a machine with network run "
        f"`datasets.load_dataset({ref!r}).save_to_disk(FOLDER)`, copy FOLDER here and add it"
    )


def _pick_split(loaded: Any, split: str | None, label: str) -> tuple[Any, str]:
    if not hasattr(loaded, "keys"):  # a single Dataset
        if split and split not in ("", "train"):
            raise DatasetError(f"{label} holds one split; leave the split empty")
        return loaded, "train"
    splits = list(loaded.keys())
    chosen = split or ("train" if "train" in splits else splits[0] if splits else "")
    if chosen not in splits:
        raise DatasetError(f"{label} has no split {chosen!r}; its splits: {', '.join(splits)}")
    return loaded[chosen], chosen


def text_columns(dataset: Any) -> list[str]:
    """The dataset's string columns, in order."""
    features = getattr(dataset, "features", None) or {}
    return [
        name
        for name, feature in features.items()
        if getattr(feature, "dtype", None) in ("string", "large_string")
    ]


def pick_column(dataset: Any, column: str | None, label: str) -> str:
    strings = text_columns(dataset)
    every = list(getattr(dataset, "features", None) or {})
    if column:
        if column not in every:
            raise DatasetError(
                f"{label} has no column {column!r}; its columns: {', '.join(every) or 'none'}"
            )
        if column not in strings:
            raise DatasetError(
                f"column {column!r} of {label} does not hold text; text columns: "
                f"{', '.join(strings) or 'none'}"
            )
        return column
    if "text" in strings:
        return "text"
    if len(strings) == 1:
        return strings[0]
    if not strings:
        raise DatasetError(f"{label} has no text column (its columns: {', '.join(every)})")
    raise DatasetError(f"{label} has several text columns ({', '.join(strings)}); choose one")


def _rows(dataset: Any, column: str) -> Iterable[Any]:
    if hasattr(dataset, "select_columns") and hasattr(dataset, "iter"):
        for batch in dataset.select_columns([column]).iter(batch_size=1000):
            yield from batch[column]
    else:
        for row in dataset:
            yield row[column]


def import_hf_dataset(
    ref: str, name: str, datasets_dir: Path, column: str | None = None, split: str | None = None
) -> TextReport:
    """Store one text column of a Hugging Face dataset (a saved folder or a Hub name) as corpus
    `name`: one document per row, empty rows dropped, cut at the cap."""
    name = check_name(name)
    ref = (ref or "").strip()
    if not ref:
        raise DatasetError(
            "name a Hugging Face dataset (a folder saved with save_to_disk, or "
            "a Hub name such as 'stanfordnlp/imdb')"
        )
    dataset, chosen = open_hf_dataset(ref, (split or "").strip() or None)
    column = pick_column(dataset, (column or "").strip() or None, ref)
    documents, size = [], 0
    try:
        for value in _rows(dataset, column):
            document = " ".join(str(value).split()) if value is not None else ""
            if document:
                documents.append(document)
                size += len(document) + 1
                if size > MAX_CORPUS_CHARS:
                    break  # one row past the cap: `_store` cuts it and reports the cut
    except (OSError, ValueError, EOFError) as exc:  # pyarrow's read errors subclass these
        raise DatasetError(
            f"{ref}: column {column!r} of split {chosen!r} could not be read "
            f"after {len(documents):,} rows ({exc})"
        ) from None
    return _store(
        name, "huggingface", documents, datasets_dir, f"column '{column}' of split '{chosen}'"
    )


def describe_hf_dataset(ref: str, split: str | None = None) -> dict[str, Any]:
    """{"split", "splits", "columns" (text columns), "column" (the default one or "")}."""
    dataset, chosen = open_hf_dataset(ref, split)
    columns = text_columns(dataset)
    default = "text" if "text" in columns else columns[0] if len(columns) == 1 else ""
    return {"split": chosen, "columns": columns, "column": default}


# ---- registration ---------------------------------------------------------------------------


def register_user_corpus(name: str, path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Make a stored user corpus loadable by name (again in each process)."""
    corpus_file = Path(path) / CORPUS_FILE

    def documents(cache_dir: str | None) -> list[str]:
        return corpus_file.read_text(encoding="utf-8").splitlines()

    origin = "Hugging Face dataset" if meta.get("origin") == "huggingface" else "text file"
    # A newer import under the same name (maybe of another kind) replaces the earlier one.
    register_dataset(
        DatasetSource(
            name=name,
            kind="text",
            description=(
                f"Your text ({origin} {meta.get('source_name', '')}: "
                f"{int(meta.get('num_documents', 0)):,} documents, "
                f"{int(meta.get('num_chars', 0)):,} characters)"
            ),
            num_train=int(meta.get("num_train", 0)),
            num_test=int(meta.get("num_test", 0)),
            documents=documents,
            unavailable=stored_file_check(corpus_file, path),
            version=int(meta.get("version", 1)),
        )
    )
