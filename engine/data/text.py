"""Text corpora, offline, and their tokenisation into fixed-length blocks of token ids.

- `captions`: the captions of the builtin `shapes` dataset ("a small red star on a plain
  blue background, top left"): a tiny, regular language where a model learns fast.
- `pydocs`: real English prose, the docstrings of the Python standard library installed here.
  They are harvested in one throwaway child process (importing ~300 modules must not touch
  this process), with the modules that act on import skipped, cleaned into one paragraph per
  line, de-duplicated, and cached under the home folder's cache. The same Python gives the same
  corpus, byte for byte.

Both are registered as `kind="text"` datasets in `engine.data.datasets`; text methods read
them with `corpus_texts` and tokenise them with `token_blocks`.
"""
from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from engine.errors import DatasetError

PYDOCS_VERSION = 1  # bump when the harvest or cleaning changes: old caches are ignored
PYDOCS_MAX_CHARS = 1_500_000  # the corpus is cut here, at a paragraph boundary
TEST_EVERY = 20  # every 20th document of a corpus is its test split


@dataclass(frozen=True)
class Corpus:
    name: str
    description: str
    num_train: int  # documents (captions, paragraphs), approximate for pydocs
    num_test: int
    documents: Callable[[str | None], list[str]]  # cache_dir -> every document


def _captions(cache_dir: str | None) -> list[str]:
    from engine.data.datasets import load_dataset  # datasets imports this module

    return [c for split in ("train", "test")
            for c in load_dataset("shapes", split, 16, cache_dir=cache_dir).captions]


# The harvest, run as `python -I -c HARVEST out_path`. Modules that act on import (open a
# browser, print, start a GUI or a REPL) or are tests and demos are skipped by name.
HARVEST = r'''
import contextlib, importlib, inspect, io, json, pkgutil, sys, warnings
SKIP = {"antigravity", "this", "idlelib", "turtledemo", "test", "tests", "lib2to3",
        "__main__", "__phello__", "__hello__", "pydoc_data", "encodings", "tkinter",
        "turtle", "ensurepip", "_tkinter", "_testcapi", "_testinternalcapi",
        "_testbuffer", "_testmultiphase", "_testimportmultiple", "_testsinglephase",
        "_testclinic", "_ctypes_test", "_xxsubinterpreters", "_xxinterpchannels", "venv", "xxsubtype", "_xxtestfuzz", "idle_test", "msilib",
        "winreg", "winsound", "msvcrt", "pip", "setuptools", "_distutils_hack"}
def wanted(name):
    parts = name.split(".")
    return not any(p in SKIP or p.startswith("__") or p.startswith("test") for p in parts)
warnings.simplefilter("ignore")
names = sorted(n for n in sys.stdlib_module_names if wanted(n))
docs, seen_modules = [], set()
def harvest(module):
    if module.__name__ in seen_modules:
        return
    seen_modules.add(module.__name__)
    docs.append(inspect.getdoc(module) or "")
    for attr, value in sorted(vars(module).items()):
        if attr.startswith("_") or getattr(value, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(value) or inspect.isfunction(value) or inspect.isbuiltin(value):
            docs.append(inspect.getdoc(value) or "")
        if inspect.isclass(value):
            for name, member in sorted(vars(value).items()):
                if not name.startswith("_") and callable(member):
                    docs.append(inspect.getdoc(member) or "")
sink = io.StringIO()
with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
    for name in names:
        try:
            module = importlib.import_module(name)
        except BaseException:
            continue
        harvest(module)
        for info in sorted(pkgutil.walk_packages(getattr(module, "__path__", []) or [],
                                                  name + ".", onerror=lambda n: None),
                           key=lambda i: i.name):
            if wanted(info.name):
                try:
                    harvest(importlib.import_module(info.name))
                except BaseException:
                    pass
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump(docs, out)
'''


def _is_prose(paragraph: str) -> bool:
    """Sentences, not code, tables or signatures."""
    words = paragraph.split()
    if len(words) < 6 or paragraph.startswith((">>>", "...", "$", "%", "|", "+-", "--")):
        return False
    letters = sum(ch.isalpha() or ch.isspace() for ch in paragraph)
    if letters < 0.85 * len(paragraph):
        return False
    first = words[0]
    return not ("(" in first and ")" in paragraph.split(" ", 1)[0] + ")")


def clean_docstrings(docstrings: list[str]) -> list[str]:
    """One paragraph per line: prose paragraphs only, whitespace collapsed, duplicates dropped
    (first occurrence kept), order preserved."""
    out, seen = [], set()
    for doc in docstrings:
        for paragraph in doc.split("\n\n"):
            lines = paragraph.strip().splitlines()
            if any(line.lstrip().startswith((">>>", "...")) for line in lines):
                continue  # doctest examples
            text = " ".join(line.strip() for line in lines)
            text = " ".join(text.split())
            if text and _is_prose(text) and text not in seen:
                seen.add(text)
                out.append(text)
    return out


def harvest_pydocs(timeout_s: float = 300.0) -> list[str]:
    """Docstring paragraphs of the standard library, harvested in a child process."""
    with tempfile.TemporaryDirectory() as folder:
        out_path = os.path.join(folder, "docs.json")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONHASHSEED"] = "0"
        try:
            subprocess.run([sys.executable, "-I", "-c", HARVEST, out_path], env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=timeout_s, cwd=folder)
        except subprocess.TimeoutExpired:
            raise DatasetError(f"harvesting the pydocs corpus took over {timeout_s:.0f} s; "
                               "try again when the machine is less busy") from None
        if not os.path.exists(out_path):
            raise DatasetError("harvesting the pydocs corpus failed in its child process")
        import json

        with open(out_path, encoding="utf-8") as handle:
            docs = json.load(handle)
    paragraphs = clean_docstrings(docs)
    kept, size = [], 0
    for paragraph in paragraphs:
        size += len(paragraph) + 1
        if size > PYDOCS_MAX_CHARS:
            break
        kept.append(paragraph)
    return kept


def _pydocs_cache_path(cache_dir: str) -> Path:
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(cache_dir) / f"pydocs-v{PYDOCS_VERSION}-{tag}.txt"


@functools.lru_cache(maxsize=2)
def _pydocs(cache_dir: str | None) -> list[str]:
    if cache_dir is None:
        return harvest_pydocs()
    path = _pydocs_cache_path(cache_dir)
    if path.exists():
        return path.read_text(encoding="utf-8").splitlines()
    paragraphs = harvest_pydocs()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".pydocs-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(paragraphs))
    os.replace(tmp, path)
    return paragraphs


# The builtin corpora; user corpora (engine.data.user_text) are added to CORPORA at run time.
CORPORA: dict[str, Corpus] = {
    "captions": Corpus("captions", "The captions of `shapes` as a text corpus (6,000 short "
                       "sentences)", 5700, 300, _captions),
    "pydocs": Corpus("pydocs", "English prose from the Python standard library's docstrings "
                     "(~1.1 MB, harvested and cached on first use)", 8100, 420,
                     lambda cache_dir: _pydocs(cache_dir)),
}


BUILTIN_CORPORA = frozenset(CORPORA)


def is_test_index(index: int) -> bool:
    """Every TEST_EVERY-th document of a corpus is in its test split."""
    return index % TEST_EVERY == TEST_EVERY - 1


def cut_to_chars(documents: list[str], max_chars: int) -> list[str]:
    """The leading documents that fit in `max_chars` characters (one separator counted per
    document); the document that crosses the limit is cut at its last space before it, so a
    corpus of one long document is cut, not emptied. `max_chars` <= 0 keeps everything."""
    if max_chars <= 0:
        return documents
    kept, size = [], 0
    for doc in documents:
        if size + len(doc) + 1 > max_chars:
            room = max_chars - size - 1
            piece = doc[:room + 1] if room > 0 else ""
            head = (piece.rsplit(" ", 1)[0] if " " in piece else piece)[:room].strip()
            if head:
                kept.append(head)
            break
        kept.append(doc)
        size += len(doc) + 1
    return kept


def corpus_texts(name: str, split: str = "train", cache_dir: str | os.PathLike | None = None,
                 max_chars: int = 0) -> list[str]:
    """The documents of one split (every TEST_EVERY-th document is test). `max_chars` > 0 cuts
    the split to that many characters (see `cut_to_chars`) before any tokenisation."""
    if name not in CORPORA:
        raise DatasetError(f"unknown text corpus {name!r}; known: {', '.join(sorted(CORPORA))}")
    if split not in ("train", "test"):
        raise DatasetError(f"unknown split {split!r}; use train or test")
    folder = None if cache_dir is None else os.path.abspath(os.fspath(cache_dir))
    docs = CORPORA[name].documents(folder)
    chosen = [d for i, d in enumerate(docs) if is_test_index(i) == (split == "test")]
    return cut_to_chars(chosen, max_chars)


def cheap_to_read(name: str, cache_dir: str | os.PathLike | None) -> bool:
    """Whether reading the corpus now is quick (pydocs is harvested on first use: not quick)."""
    if name != "pydocs":
        return name in CORPORA
    return cache_dir is not None and _pydocs_cache_path(os.fspath(cache_dir)).exists()


def corpus_digest(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def token_blocks(texts: list[str], tokenizer, block_size: int, separator_id: int,
                 prefix_id: int | None = None,
                 encoded: list[list[int]] | None = None) -> torch.Tensor:
    """Pack documents into rows of `block_size` token ids: each document's tokens followed by
    `separator_id`, concatenated, cut into blocks (the remainder is dropped); with `prefix_id`,
    each block starts with it (BERT's [CLS]). (N, block_size) int64. `encoded`: the texts'
    token ids when the caller has them already (see `encode`)."""
    encoded = encode(texts, tokenizer) if encoded is None else encoded
    stream = [token for ids in encoded for token in (*ids, separator_id)]
    body = block_size - (prefix_id is not None)
    count = len(stream) // body
    if count == 0:
        raise DatasetError(f"the corpus has {len(stream)} tokens, fewer than one block of "
                           f"{block_size}; use a shorter context length or more text")
    blocks = torch.tensor(stream[:count * body], dtype=torch.long).view(count, body)
    if prefix_id is not None:
        blocks = torch.cat([torch.full((count, 1), prefix_id, dtype=torch.long), blocks], 1)
    return blocks


def encode(texts: list[str], tokenizer) -> list[list[int]]:
    """Each text's token ids, without special tokens."""
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def token_rows(texts: list[str], tokenizer, row_size: int, cls_id: int | None, sep_id: int,
               pad_id: int, encoded: list[list[int]] | None = None) -> torch.Tensor:
    """One document per row, BERT's way for single sentences: [CLS] tokens [SEP] (T5's: tokens
    </s>, with `cls_id` None), padded with `pad_id` to the longest row (at most `row_size`); a
    document too long for a row continues in the next rows, so nothing is dropped.
    (N, width) int64, width <= row_size."""
    prefix = [] if cls_id is None else [cls_id]
    body = row_size - 1 - len(prefix)
    if body < 1:
        raise DatasetError(f"a context length of {row_size} leaves no room for text in a row; "
                           "use at least 3")
    encoded = encode(texts, tokenizer) if encoded is None else encoded
    rows = [[*prefix, *ids[start:start + body], sep_id]
            for ids in encoded if ids for start in range(0, len(ids), body)]
    if not rows:
        raise DatasetError("the corpus has no tokens; add text")
    width = max(len(row) for row in rows)
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def fits_in_rows(texts: list[str], tokenizer, row_size: int, share: float = 0.9,
                 encoded: list[list[int]] | None = None, specials: int = 2) -> bool:
    """Whether at least `share` of the documents fit in one row of `row_size` with `specials`
    extra tokens ([CLS] and [SEP]; T5's </s> alone is 1) (short documents such as captions):
    then rows waste little on padding."""
    encoded = encode(texts, tokenizer) if encoded is None else encoded
    lengths = [len(ids) for ids in encoded]
    room = row_size - specials
    return bool(lengths) and sum(n <= room for n in lengths) >= share * len(lengths)
