"""Real-browser tests at 1366x768: the Train tab's demo on one screen, the first point drawn.

Skipped when Debian's chromium or playwright is missing (it never downloads a browser).
"""

from __future__ import annotations

import os
import re
import shutil
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

from engine.api import Studio  # noqa: E402
from tests.webapp.helpers import free_port, kill_workers  # noqa: E402
from webapp.app import build_app, launch_options  # noqa: E402


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


VIEWPORT = {"width": 1366, "height": 768}  # a common laptop screen: the demo's one screen
# Plotly draws each curve as a "js-line" path and each marker as a "point" in its scatterlayer.
LINE = "#train-loss .scatterlayer .js-line"
POINT = "#train-loss .scatterlayer .point"
# A tick label written in full: 3.5, 0.0005, 1e−4 (plotly's minus), 1,000.
TICK = re.compile(r"^[−-]?[\d,]+(\.\d+)?(e[−+-]?\d+)?$")


@pytest.fixture
def page(app_url):
    """The app's page in headless Chromium at 1366x768, its Train tab ready; page errors
    collected in `page.errors`."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.errors = []
            page.on("pageerror", lambda error: page.errors.append(str(error)))
            page.goto(app_url[0], wait_until="load")
            page.get_by_role("button", name="Start").wait_for()
            yield page
        finally:
            browser.close()


def set_number(page, label: str, value: int) -> None:
    page.get_by_label(label, exact=True).fill(str(value))


def shot(page, tmp_path, name: str) -> None:
    """A screenshot of what is on screen, into $PRETEXT_SHOTS (to look at) or the test's
    temporary folder."""
    folder = os.environ.get("PRETEXT_SHOTS") or str(tmp_path)
    os.makedirs(folder, exist_ok=True)
    page.screenshot(path=os.path.join(folder, f"{name}.png"))


def in_view(page, locator) -> bool:
    box = locator.bounding_box()
    size = page.viewport_size
    return bool(
        box
        and box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= size["width"]
        and box["y"] + box["height"] <= size["height"]
    )


def tick_labels(page, axis: str) -> list[str]:
    """The tick labels plotly drew on the loss chart's `axis` ("ytick", "y2tick", "xtick")."""
    return [t.strip() for t in page.locator(f"#train-loss .{axis} text").all_text_contents()]


def wait_for_status(page, *words: str, timeout: float = 120_000) -> None:
    status = page.locator("#train-status")
    page.wait_for_function(
        "([el, words]) => words.some(w => el.innerText.includes(w))",
        arg=[status.element_handle(), list(words)],
        timeout=timeout,
    )


def test_start_shows_the_job_on_one_screen_from_its_first_point(app_url, page, tmp_path):
    """The demo at 1366x768 (issue #18): after Start, the Start button, the status line and the
    loss chart are on screen without scrolling; the first point is a visible marker on titled
    axes whose ticks are written in full; Stop and Resume work from the same screen; then the
    Runs tab and each lens with its first example (the explorer: the next test).
    PRETEXT_SHOTS=/some/folder keeps the screenshots to look at."""
    _, studio = app_url
    page.get_by_label("Dataset").click()
    page.get_by_role("option", name="digits").click()
    set_number(page, "steps", 200)
    set_number(page, "batch size", 16)
    set_number(page, "image size", 16)
    for protocol in ("k-NN", "linear probe"):  # evaluation has tests of its own
        page.locator("#train-evals").get_by_label(protocol, exact=True).uncheck()
    page.evaluate("window.scrollTo(0, 0)")
    start = page.get_by_role("button", name="Start")
    start.click()
    # The first point is a visible marker (state "visible" is the assertion). Curves of more
    # than charts.MARKERS_UP_TO points are lines only: a fast machine may pass that before
    # the next check, so from here on a marker or a line will do.
    page.locator(POINT).first.wait_for(state="visible", timeout=120_000)
    page.wait_for_timeout(500)  # plotly's draw
    shot(page, tmp_path, "1-first-point")
    assert page.evaluate("window.scrollY") == 0
    for element in (start, page.locator("#train-status"), page.locator("#train-loss")):
        assert in_view(page, element), element
    # Some marker or curve is still drawn: the first in the page's order may be a curve of one
    # point or a flat one (an empty box, so "hidden"), and plotly redraws on each poll.
    drawn = page.locator(POINT).or_(page.locator(LINE)).filter(visible=True)
    drawn.first.wait_for(state="visible", timeout=10_000)
    titles = page.locator("#train-loss text[class$='title']").all_text_contents()  # SVG text
    assert {"loss", "lr", "step"} <= set(titles), titles
    for axis in ("ytick", "y2tick", "xtick"):
        labels = tick_labels(page, axis)
        assert labels and all(TICK.match(t) for t in labels), (axis, labels)
    assert "step " in page.locator("#train-status").inner_text()

    stop = page.get_by_role("button", name="Stop")
    assert in_view(page, stop)
    stop.click()
    wait_for_status(page, "· cancelled")
    shot(page, tmp_path, "2-stopped")
    page.get_by_role("button", name="Resume").click()
    wait_for_status(page, "· running ·", "· completed")  # not "waiting for the running job"
    page.locator(LINE).first.wait_for(timeout=60_000)
    shot(page, tmp_path, "3-resumed")
    stop.click()
    wait_for_status(page, "· cancelled", "· completed")
    assert page.locator(LINE).first.get_attribute("d")
    assert not page.errors, page.errors
    [job] = studio.jobs()
    assert job["status"] in ("cancelled", "completed") and job["step"] >= 1
    assert studio.job(job["id"])["spec"]["params"] == {
        "steps": 200,
        "batch_size": 16,
        "image_size": 16,
    }
    page.get_by_role("tab", name="Runs").click()
    page.wait_for_timeout(2000)
    shot(page, tmp_path, "4-runs")
    try_lenses(page, tmp_path)
    assert not page.errors, page.errors


def progress_bars(page) -> int:
    """Gradio's busy status trackers on screen (each shows a timer or a bar)."""
    busy = "[data-testid='status-tracker']:not(.hide):has(.progress-text, .eta-bar, .loader)"
    return page.locator(f"{busy} >> visible=true").count()


def map_titles(page) -> list[str]:
    """Map A's axis titles: the 2-D map's (Vega SVG) or the 3-D one's (plotly)."""
    return page.locator(
        "#ps-map-a .role-axis-title text, #ps-map3-a .g-gtitle, #ps-map3-a text[class$='title']"
    ).all_text_contents()


def map_points(page) -> list[str]:
    """Where map A's points sit (Vega's symbol transforms): a redrawn map moves them."""
    return [
        p.get_attribute("transform") or ""
        for p in page.locator("#ps-map-a .mark-symbol path").all()[:50]
    ]


def draw(page, note: str, tmp_path, name: str, *, timeout: float = 240_000) -> None:
    """Press Draw; wait until map A's axes say `note`; at most one progress bar meanwhile."""
    page.get_by_role("button", name="Draw").click()
    busiest = 0
    deadline = time.monotonic() + timeout / 1000
    while not any(note in t for t in map_titles(page)):
        assert time.monotonic() < deadline, (note, map_titles(page))
        busiest = max(busiest, progress_bars(page))
        page.wait_for_timeout(250)
    page.wait_for_timeout(800)
    page.locator("#ps-map-a").scroll_into_view_if_needed()
    shot(page, tmp_path, name)
    assert busiest <= 1, f"{busiest} progress bars at once"
    assert page.get_by_text("press Draw").filter(visible=True).count() == 0  # not stale


def test_explorer_pca_umap_3d_never_shows_a_stale_map(page, tmp_path):
    """The demo's explorer step on raw pixels (no job needed): PCA, then UMAP (the PCA map
    greyed out under "press Draw" until it is redrawn, then UMAP's points under UMAP's
    axes), then 3-D; one progress bar while drawing."""
    page.get_by_role("tab", name="Embeddings").click()
    model = page.get_by_label("Model", exact=True).filter(visible=True)
    model.fill("pixels")
    model.press("Enter")
    page.get_by_label("Dataset", exact=True).filter(visible=True).click()
    page.get_by_role("option", name="digits").filter(visible=True).first.click()
    explore(page, tmp_path)
    assert not page.errors, page.errors


def explore(page, tmp_path) -> None:
    page.get_by_role("tab", name="Embeddings").click()
    page.get_by_label("Compare with", exact=True).click()
    page.get_by_role("option", name="(none)").click()
    page.get_by_label("Samples", exact=True).fill("300")
    draw(page, "PC 1", tmp_path, "5-explorer-pca")
    pca_points = map_points(page)
    assert pca_points
    page.get_by_label("UMAP", exact=True).check()
    page.wait_for_timeout(1500)
    assert page.get_by_text("press Draw").filter(visible=True).count() == 1
    assert not any("UMAP" in t for t in map_titles(page))  # PCA's points, PCA's axes
    page.locator("#ps-map-a").scroll_into_view_if_needed()
    shot(page, tmp_path, "6-explorer-stale")
    draw(page, "UMAP 1", tmp_path, "7-explorer-umap")
    assert map_points(page) != pca_points  # UMAP's points under UMAP's axes
    page.get_by_label("3-D", exact=True).check()
    page.get_by_role("button", name="Draw").click()
    # The plotly 3-D scene replaces the 2-D map (its WebGL may not paint without a GPU).
    page.locator("#ps-map3-a .js-plotly-plot").wait_for(state="attached", timeout=120_000)
    page.locator("#ps-map-a").wait_for(state="hidden", timeout=60_000)
    page.wait_for_timeout(1500)
    page.locator("#ps-map3-a").scroll_into_view_if_needed()
    shot(page, tmp_path, "8-explorer-3d")


LENSES = [  # (tab, inner tab or None, its button when it has no examples)
    ("Attention", None, None),
    ("MAE reconstruction", None, None),
    ("What the model sees", None, "Show views"),
    ("CLIP", "Zero-shot", None),
    ("CLIP", "Retrieval", None),
    ("Language", "Fill-mask", None),
    ("Language", "Generate", None),
    ("Language", "Text to text", None),
]


def try_lenses(page, tmp_path) -> None:
    """Each lens with its first example: whatever model it offers (a Hub id is out of reach
    offline), it answers with a result or a message that names the problem, never a bug."""
    for i, (tab, inner, button) in enumerate(LENSES):
        page.get_by_role("tab", name=tab, exact=True).click()
        if inner:
            page.get_by_role("tab", name=inner, exact=True).click()
        page.wait_for_timeout(800)
        if button:
            page.get_by_role("button", name=button).click()
        else:
            page.locator("button.gallery-item, tr.tr-body").filter(visible=True).first.click()
        page.wait_for_timeout(5000)
        shot(page, tmp_path, f"9-lens-{i}-{(inner or tab).replace(' ', '-').lower()}")
        assert page.get_by_text("internal error").filter(visible=True).count() == 0, tab


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


def test_more_settings_checkboxes_keep_their_labels_readable(page):
    """A checkbox among the number boxes of *More settings* is as wide as they are (Gradio gave
    its block no minimum width, and its label shrank to one letter at 1366x768); BYOL's form
    shows its quick preset's crops of 70% and starts on `scenes`."""
    page.get_by_label("Method", exact=True).click()
    page.get_by_role("option", name="byol ·").first.click()
    page.wait_for_timeout(2000)
    assert page.get_by_label("Dataset", exact=True).input_value().startswith("scenes")
    page.get_by_text("More settings").click()
    page.wait_for_timeout(1000)
    assert page.get_by_label("crop min scale", exact=True).input_value() == "0.7"
    widths = page.evaluate(
        """() => [...document.querySelectorAll('.ps-params input[type=checkbox]')]
            .filter(box => box.offsetParent)
            .map(box => box.closest('.block').getBoundingClientRect().width)"""
    )
    assert widths and min(widths) >= 150, widths
    assert not page.errors, page.errors
