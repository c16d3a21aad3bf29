"""The `pydocs` corpus: English prose from the docstrings of the Python standard library.

They are harvested in one throwaway child process (importing ~300 modules must not touch this
process), with the modules that act on import skipped, cleaned into one paragraph per line,
de-duplicated, and cached under the given cache folder. The same Python gives the same corpus,
byte for byte. `engine.data.catalog` registers it as a text dataset; `engine.data.text` splits
and tokenises it like any corpus.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from engine.errors import DatasetError

PYDOCS_VERSION = 1  # bump when the harvest or cleaning changes: old caches are ignored
PYDOCS_MAX_CHARS = 1_500_000  # the corpus is cut here, at a paragraph boundary


# The harvest, run as `python -I -c HARVEST out_path`. Modules that act on import (open a
# browser, print, start a GUI or a REPL) or are tests and demos are skipped by name.
HARVEST = r"""
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
"""


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
            subprocess.run(
                [sys.executable, "-I", "-c", HARVEST, out_path],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout_s,
                cwd=folder,
            )
        except subprocess.TimeoutExpired:
            raise DatasetError(
                f"harvesting the pydocs corpus took over {timeout_s:.0f} s; "
                "try again when the machine is less busy"
            ) from None
        if not os.path.exists(out_path):
            raise DatasetError("harvesting the pydocs corpus failed in its child process")
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


def cache_path(cache_dir: str | os.PathLike) -> Path:
    """Where the corpus is cached in `cache_dir` (per corpus version and Python version)."""
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(cache_dir) / f"pydocs-v{PYDOCS_VERSION}-{tag}.txt"


def is_cached(cache_dir: str | os.PathLike | None) -> bool:
    """Whether reading the corpus is quick: harvested already into `cache_dir`."""
    return cache_dir is not None and cache_path(cache_dir).exists()


@functools.lru_cache(maxsize=2)
def load_pydocs(cache_dir: str | None) -> list[str]:
    """Every paragraph of the corpus: read from `cache_dir`, else harvested (and cached there
    when `cache_dir` is given)."""
    if cache_dir is None:
        return harvest_pydocs()
    path = cache_path(cache_dir)
    if path.exists():
        return path.read_text(encoding="utf-8").splitlines()
    paragraphs = harvest_pydocs()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".pydocs-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(paragraphs))
    os.replace(tmp, path)
    return paragraphs
