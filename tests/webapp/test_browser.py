"""A real-browser smoke test: Start a tiny job on the Train tab and see its loss curve drawn.

Skipped when Debian's chromium or playwright is missing (it never downloads a browser).
"""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

from engine.api import Studio  # noqa: E402
from tests.webapp.helpers import free_port, kill_workers  # noqa: E402
from webapp.app import build_app, launch_options  # noqa: E402

# Plotly draws each curve as a "js-line" path (and each marker as a "point") in its scatterlayer.
LINE = "#train-loss .scatterlayer .js-line"


@pytest.fixture
def app_url(tmp_path):
    studio = Studio(tmp_path / "home")
    studio.start_manager()
    demo = build_app(studio)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(),
    )
    yield f"http://127.0.0.1:{port}/", studio
    demo.close()
    kill_workers(studio)


@pytest.fixture
def page(app_url):
    """The app's page in headless Chromium, its Train tab ready; page errors collected in
    `page.errors`."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.errors = []
            page.on("pageerror", lambda error: page.errors.append(str(error)))
            page.goto(app_url[0], wait_until="load")
            page.get_by_role("button", name="Start").wait_for()
            yield page
        finally:
            browser.close()


def set_number(page, label: str, value: int) -> None:
    page.get_by_label(label, exact=True).fill(str(value))


def test_start_draws_the_loss_curve(app_url, page, tmp_path):
    _, studio = app_url
    page.get_by_label("Dataset").click()
    page.get_by_role("option", name="digits").click()
    set_number(page, "steps", 4)
    set_number(page, "batch size", 16)
    set_number(page, "image size", 16)
    for protocol in ("k-NN", "linear probe"):  # evaluation has tests of its own
        page.locator("#train-evals").get_by_label(protocol, exact=True).uncheck()
    page.get_by_role("button", name="Start").click()
    page.locator(LINE).first.wait_for(timeout=60_000)
    page.get_by_text("completed").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)  # the last tick's redraw
    page.screenshot(path=str(tmp_path / "train.png"), full_page=True)
    assert page.locator(LINE).first.get_attribute("d")
    assert "step 4/4" in page.locator("#train-status").inner_text()
    assert not page.errors, page.errors
    [job] = studio.jobs()
    assert job["status"] == "completed" and job["step"] == 4
    assert studio.job(job["id"])["spec"]["params"] == {
        "steps": 4,
        "batch_size": 16,
        "image_size": 16,
    }


def test_switching_methods_keeps_the_dataset_list_valid(page):
    """Text method, then image method, then text method: each gets a dataset it can train on,
    and no "captions is not in the list of choices" error toast appears on the way."""
    dataset = page.get_by_label("Dataset", exact=True)
    for method, expected in (
        ("bert", "captions"),
        ("dino", "shapes"),
        ("t5", "captions"),
        ("clip", "shapes"),
    ):
        page.get_by_label("Method", exact=True).click()
        page.get_by_role("option", name=f"{method} ·").first.click()
        page.wait_for_timeout(2000)
        assert dataset.input_value().startswith(expected), method
    page.wait_for_timeout(1000)
    assert page.get_by_text("not in the list of choices").count() == 0
    assert not page.errors, page.errors
