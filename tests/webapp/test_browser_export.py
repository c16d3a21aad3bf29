"""Export and Push in a real browser: select a finished job in the Jobs tab, download its zip
(served by Gradio from its temporary folder), and push offline to get the one-line refusal.
Skipped when Debian's chromium or playwright is missing (it never downloads a browser)."""

from __future__ import annotations

import os
import shutil
import zipfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

from engine.api import Studio  # noqa: E402
from tests.webapp.helpers import free_port  # noqa: E402
from webapp.app import build_app, launch_options  # noqa: E402

TINY = {"steps": 3, "batch_size": 16, "image_size": 16, "warmup_steps": 1, "precision": "fp32"}


def test_export_downloads_a_zip_and_push_offline_says_why(tmp_path):
    studio = Studio(tmp_path / "home")
    job = studio.run_foreground({"method": "simclr", "dataset": "digits", "params": TINY})
    assert job["status"] == "completed"
    demo = build_app(studio)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(),
    )
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1366, "height": 900}, accept_downloads=True)
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
            page.get_by_role("tab", name="Jobs").click()
            page.get_by_text("simclr", exact=True).filter(visible=True).first.click()
            page.get_by_text("Export or push to the Hugging Face Hub").click()
            page.get_by_role("button", name="Export as zip").click()
            download = page.get_by_role("button", name=f"Download job-{job['job_id']}-step-3.zip")
            download.wait_for(timeout=120_000)
            with page.expect_download() as info:
                download.click()
            with zipfile.ZipFile(info.value.path()) as archive:
                names = set(archive.namelist())
            folder = f"job-{job['job_id']}-step-3"
            assert {f"{folder}/README.md", f"{folder}/load.py"} <= names
            token = page.get_by_label("Hugging Face write token")
            assert token.get_attribute("type") == "password"
            page.get_by_label("Hub repo").fill("someone/model")
            token.fill("hf_secret")
            page.get_by_role("button", name="Push", exact=True).click()
            page.get_by_text("HF_HUB_OFFLINE is set").wait_for(timeout=60_000)
            assert "hf_secret" not in page.content()
            browser.close()
    finally:
        demo.close()
        studio.shutdown()
