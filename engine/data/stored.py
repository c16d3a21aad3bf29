"""The datasets users added, registered from the job store in every process that needs them
(the web app, a worker, the CLI)."""

from __future__ import annotations

from engine.data.stored_images import is_store, register_stored_dataset
from engine.data.user_images import register_user_dataset
from engine.data.user_text import register_user_corpus
from storage.db import Store


def register_user_datasets(store: Store) -> None:
    """Make the datasets users added loadable in this process (web, worker or CLI)."""
    for row in store.user_datasets():
        if row.kind == "text":
            register_user_corpus(row.name, row.path, row.meta)
        elif is_store(row.path, row.meta or {}):  # meta["store"] == 1: an image store folder
            register_stored_dataset(row.name, row.path, row.meta)
        else:  # an older import: data.pt
            register_user_dataset(row.name, row.path, row.meta)
