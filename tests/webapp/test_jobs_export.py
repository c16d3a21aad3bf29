"""The Jobs tab's Export and Push handlers: a zip Gradio may serve, the token handed to
`studio.push` and to nothing else, the user's errors as one red line, viewers refused."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import pytest

from engine.errors import JobError
from webapp.jobs_export import ExportPanel


class FakeStudio:
    def __init__(self, tmp_path) -> None:
        self.tmp_path, self.pushed = tmp_path, []

    def export(self, job_id, out_dir=None, step=None, make_zip=False):
        if job_id == 404:
            raise JobError("job 404 has no checkpoint yet (queued); export it once it has one")
        archive = self.tmp_path / f"job-{job_id}-step-6.zip"
        archive.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
        return {
            "job_id": job_id,
            "step": 6,
            "folder": str(self.tmp_path / f"job-{job_id}-step-6"),
            "zip": str(archive) if make_zip else None,
            "files": ["README.md", "model.safetensors"],
        }

    def push(self, job_id, repo_id, token=None, private=False, step=None):
        self.pushed.append((job_id, repo_id, token, private))
        return {
            "job_id": job_id,
            "step": 6,
            "repo_id": repo_id,
            "url": f"https://huggingface.co/{repo_id}",
            "folder": "/x",
        }


@pytest.fixture
def panel(tmp_path):
    with gr.Blocks():
        panel = ExportPanel(FakeStudio(tmp_path))
        panel.build()
    return panel


def test_export_offers_a_copy_of_the_zip_from_gradios_temporary_folder(panel, tmp_path):
    import tempfile

    out = panel.export(3)
    button = out[panel.download]
    served = button.value["path"]
    assert button.visible and served.endswith("job-3-step-6.zip")
    assert served.startswith(tempfile.gettempdir())  # where Gradio may serve it from
    assert os.path.exists(served)
    assert "ps-ok" in out[panel.note] and "step 6" in out[panel.note]
    assert "ps-warn" in panel.export(None)[panel.note]
    refused = panel.export(404)
    assert "ps-error" in refused[panel.note] and "no checkpoint yet" in refused[panel.note]
    assert refused[panel.download].visible is False


def test_push_hands_the_token_to_the_studio_only(panel):
    note = panel.push(3, "me/model", "hf_secret", True)
    assert panel.studio.pushed == [(3, "me/model", "hf_secret", True)]
    assert "https://huggingface.co/me/model" in note and "hf_secret" not in note
    panel.push(3, "me/model", "", False)
    assert panel.studio.pushed[-1] == (3, "me/model", None, False)  # empty: HF_TOKEN
    assert "ps-warn" in panel.push(None, "me/model", "hf_secret", True)


def test_a_viewer_is_refused_both(tmp_path):
    from engine.api import Studio
    from webapp.access import Access, GuardedStudio

    class Request:
        session_hash, headers = "s1", {}

    guarded = GuardedStudio(Studio(tmp_path / "home"), Access("viewer"), request=lambda: Request())
    with gr.Blocks():
        panel = ExportPanel(guarded)
        panel.build()
    assert "viewer mode" in panel.export(1)[panel.note]
    assert "viewer mode" in panel.push(1, "me/model", "hf_secret", True)


def test_an_open_studio_does_not_lend_the_servers_token(tmp_path):
    from engine.api import Studio
    from webapp.access import Access, GuardedStudio

    class Request:
        session_hash, headers = "s1", {}

    guarded = GuardedStudio(Studio(tmp_path / "home"), Access("open"), request=lambda: Request())
    with gr.Blocks():
        panel = ExportPanel(guarded)
        panel.build()
    note = panel.push(1, "me/model", "", True)
    assert "ps-warn" in note and "your own Hugging Face write token" in note
    # With a pasted token the push goes ahead (here: refused offline, in one line).
    assert "HF_HUB_OFFLINE" in panel.push(1, "me/model", "hf_visitor", True)
