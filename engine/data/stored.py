"""The datasets users added, registered from the job store in every process that needs them
(the web app, a worker, the CLI)."""

from __future__ import annotations

from engine.data.user_images import register_user_dataset
from engine.data.user_text import register_user_corpus
from storage.db import Store


def register_user_datasets(store: Store) -> None:
    """Make the datasets users added loadable in this process (web, worker or CLI)."""
    for row in store.user_datasets():
        register = register_user_corpus if row.kind == "text" else register_user_dataset
        register(row.name, row.path, row.meta)
