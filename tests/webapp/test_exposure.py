"""An exposed studio: hostile server paths posted to every handler the app registers (its whole
dependency list, private events included), viewer mode refusing every change, and the modes.

The walk launches the app with one data root and posts, over HTTP as a browser or a script
would, `/etc/passwd`, `..` paths out of the root and a symlink inside the root pointing out of
it, into every text input and every file input of every event. An audit hook records every file
the process opens or lists meanwhile: nothing outside the root may be among them, no dataset may
be added, and no answer may carry the secret's bytes.
"""

from __future__ import annotations

import json
import os
import sys
import uuid

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import httpx
import numpy as np
import pytest
from PIL import Image

from engine.access import AccessError, ServerPaths
from engine.api import Studio
from tests.webapp.helpers import free_port, kill_workers
from webapp.access import Access, GuardedStudio, ViewerError
from webapp.app import build_app

SECRET = "root:x:0:0:pretext-secret-line"
TEXT_TYPES = (gr.Textbox, gr.Dropdown, gr.Code)
FILE_TYPES = (gr.File, gr.Image, gr.UploadButton)

# ---- the audit hook: every open/listdir of the process while `_AUDIT["on"]` ---------------
_AUDIT: dict = {"on": False, "paths": []}
_AUDITED = (
    "open",
    "os.listdir",
    "os.scandir",
    "shutil.copyfile",
    "shutil.copytree",
    "shutil.unpack_archive",
    "zipfile.ZipFile",
)


def _hook(event: str, args: tuple) -> None:
    if _AUDIT["on"] and event in _AUDITED and args:
        target = args[0]
        if isinstance(target, (str, bytes, os.PathLike)):
            _AUDIT["paths"].append(os.fsdecode(target))


sys.addaudithook(_hook)


@pytest.fixture
def hostile(tmp_path):
    """A data root, a folder outside it holding a secret and images, and a symlink from the
    root to the outside; returns (root, [hostile path strings], outside)."""
    root, outside = tmp_path / "roots" / "data", tmp_path / "outside"
    (outside / "imgs" / "cats").mkdir(parents=True)
    root.mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET + "\n" * 3 + SECRET * 50)
    for i in range(4):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(
            outside / "imgs" / "cats" / f"{i}.png"
        )
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "inside.txt").write_text("fine\n")
    paths = [
        "/etc/passwd",
        str(root / ".." / ".." / "outside" / "secret.txt"),
        str(root / "link" / "imgs"),
    ]
    return root, paths, outside


def _forbidden(path: str, outside) -> bool:
    real, out = os.path.realpath(path), os.path.realpath(outside)
    return real == "/etc/passwd" or real == out or real.startswith(out + os.sep)


def _component_values(demo: gr.Blocks) -> dict[int, object]:
    return {c["id"]: c.get("props", {}).get("value") for c in demo.config["components"]}


def _plausible(component: gr.components.Component, values: dict[int, object]) -> object:
    """What the page holds for `component`, or a harmless word for an empty text box."""
    value = values.get(component._id)
    if isinstance(component, TEXT_TYPES) and not value:
        return "walk"
    if isinstance(component, FILE_TYPES):
        return None
    return value


def _post(client: httpx.Client, fn_index: int, data: list) -> str:
    """Run one event through the queue like the browser does; returns the raw stream text."""
    session = uuid.uuid4().hex[:10]
    joined = client.post(
        "/gradio_api/queue/join",
        json={
            "data": data,
            "fn_index": fn_index,
            "session_hash": session,
            "event_data": None,
            "trigger_id": None,
        },
    )
    if joined.status_code != 200:
        return joined.text
    out = []
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            out.append(line)
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") in ("process_completed", "close_stream", "unexpected_error"):
                    break
    return "\n".join(out)


def test_every_handler_refuses_paths_outside_the_data_roots(tmp_path, hostile):
    root, paths, outside = hostile
    studio = Studio(
        tmp_path / "home", paths=ServerPaths.inside([root], hidden=[tmp_path / "uploads"])
    )
    demo = build_app(studio)  # local mode: the owner, so only the path policy stands guard
    demo.queue(default_concurrency_limit=4)
    port = free_port()
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    values = _component_values(demo)
    walked, answers, seen = 0, [], set()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for fn_index, fn in demo.fns.items():
                kinds = [isinstance(c, TEXT_TYPES + FILE_TYPES) for c in fn.inputs]
                # The same code on another instance of the same class (each lens's model
                # picker refresh) reads the same way: walk it once.
                code = (
                    type(getattr(fn.fn, "__self__", None)),
                    getattr(getattr(fn.fn, "__func__", fn.fn), "__code__", None),
                )
                if fn.fn is None or not any(kinds) or code in seen:
                    continue
                seen.add(code)
                walked += 1
                # One hostile input at a time, the others plausible (a dataset name must be
                # valid for an import to reach its path).
                for target in [i for i, kind in enumerate(kinds) if kind]:
                    for path in paths:
                        data = [_plausible(c, values) for c in fn.inputs]
                        if isinstance(fn.inputs[target], FILE_TYPES):
                            data[target] = {
                                "path": path,
                                "orig_name": "x.zip",
                                "meta": {"_type": "gradio.FileData"},
                            }
                        else:
                            data[target] = path
                        _AUDIT.update(on=True, paths=[])
                        try:
                            answers.append(_post(client, fn_index, data))
                        finally:
                            _AUDIT["on"] = False
                        read = [p for p in _AUDIT["paths"] if _forbidden(p, outside)]
                        assert not read, (fn.name, target, path, read)
    finally:
        demo.close()
        kill_workers(studio)
    assert walked >= 20  # the lenses, the explorer, the data panel, the forms...
    assert studio.store.user_datasets() == []
    assert not any(SECRET in answer for answer in answers)
    assert not any("root:x:0:0" in answer for answer in answers)


def test_paths_inside_a_root_are_read(tmp_path, hostile, monkeypatch):
    root, _, outside = hostile
    (root / "imgs" / "dogs").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((20, 20, 3), 30 * i, np.uint8)).save(
            root / "imgs" / "dogs" / f"{i}.png"
        )
    studio = Studio(tmp_path / "home", paths=ServerPaths.inside([root]))
    info = studio.add_image_dataset(str(root / "imgs"), "dogs")
    assert info["name"] == "dogs"
    with pytest.raises(AccessError, match="outside the data folders"):
        studio.add_image_dataset(str(root / "link" / "imgs"), "cats")  # symlink out
    with pytest.raises(AccessError, match="full path"):
        studio.add_text_dataset("roots/data/inside.txt", "notes")
    # a Hub-id-shaped name that exists on the server as a relative path is not a Hub id
    monkeypatch.chdir(root.parent.parent)  # undone after the test: later ones run from the repo
    with pytest.raises(AccessError, match="names a file on the server"):
        studio.lenses.lens_model("fill_mask", "roots/data")


def test_no_roots_hides_server_paths_and_refuses_them(tmp_path):
    paths = ServerPaths.from_env(environ={})
    assert paths.restricted and not paths.server_paths_allowed
    with pytest.raises(AccessError, match="turned off"):
        paths.check("/etc/passwd")
    studio = Studio(tmp_path / "home", paths=paths)
    with gr.Blocks():
        from webapp.data_panel import DataPanel

        panel = DataPanel(GuardedStudio(studio, Access()))
        panel.build()
    assert panel.folder.visible is False and panel.text_path.visible is False
    with pytest.raises(AccessError):
        ServerPaths.from_env(environ={"PRETEXT_DATA_ROOTS": str(tmp_path / "missing")})
    assert ServerPaths.anywhere().check("~/x").name == "x"  # the CLI reads anywhere


def test_prefix_is_not_containment(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data-evil").mkdir()
    paths = ServerPaths.inside([tmp_path / "data"])
    with pytest.raises(AccessError):
        paths.check(str(tmp_path / "data-evil"))
    assert paths.check(str(tmp_path / "data" / "x")) == (tmp_path / "data" / "x").resolve()


# ---- owner and viewer -----------------------------------------------------------------
class _Request:
    def __init__(self, session: str = "s1", headers: dict | None = None) -> None:
        self.session_hash, self.headers = session, headers or {}


@pytest.mark.parametrize(
    "host, env, flags, mode",
    [
        ("127.0.0.1", {}, {}, "local"),
        (None, {}, {}, "local"),
        ("0.0.0.0", {}, {}, "public"),
        (None, {"GRADIO_SERVER_NAME": "0.0.0.0"}, {}, "public"),
        (None, {"SYSTEM": "spaces", "SPACE_ID": "me/studio"}, {}, "public"),
        ("0.0.0.0", {}, {"auth": ("u", "p")}, "private"),
        ("0.0.0.0", {}, {"open_": True}, "open"),
        ("127.0.0.1", {"PRETEXT_VIEWER": "1"}, {}, "viewer"),
        ("0.0.0.0", {}, {"viewer": True, "open_": True}, "viewer"),
    ],
)
def test_modes(host, env, flags, mode):
    assert Access.resolve(host, environ=env, **flags).mode == mode


def test_space_owners_are_its_author_and_the_listed_users():
    space = {
        "SYSTEM": "spaces",
        "SPACE_ID": "ann/studio",
        "SPACE_AUTHOR_NAME": "ann",
        "PRETEXT_OWNERS": "bob, cy",
    }
    # Without the Space's OAuth app (hf_oauth: true sets these) there is no Hugging Face
    # sign-in: Gradio would refuse to start with a login button.
    assert not Access.resolve(None, environ=space).oauth
    oauth = {
        name: "x"
        for name in (
            "OAUTH_CLIENT_ID",
            "OAUTH_CLIENT_SECRET",
            "OAUTH_SCOPES",
            "OPENID_PROVIDER_URL",
        )
    }
    access = Access.resolve(None, environ={**space, **oauth})
    assert access.oauth and access.owners == {"ann", "bob", "cy"}
    assert not access.sign_in_with_profile("mallory", _Request("m"))
    assert not access.may_change(_Request("m"))
    assert access.sign_in_with_profile("bob", _Request("b"))
    assert access.may_change(_Request("b"))


def test_owner_key_signs_a_session_in(monkeypatch):
    monkeypatch.setattr("webapp.access.SIGN_IN_DELAY_S", 0)
    access = Access.resolve("0.0.0.0", environ={"PRETEXT_OWNER_KEY": "k3y"})
    assert not access.may_change(_Request("a"))
    assert not access.may_change(None)
    assert not access.sign_in_with_key("wrong", _Request("a"))
    assert access.sign_in_with_key("k3y", _Request("a"))
    assert access.may_change(_Request("a")) and not access.may_change(_Request("b"))
    assert access.may_change(_Request("c", {"x-pretext-owner-key": "k3y"}))
    assert not access.may_change(_Request("c", {"x-pretext-owner-key": "k3"}))


MUTATING_CALLS = [
    ("submit", ({"method": "simclr", "dataset": "digits"},)),
    ("cancel", (1,)),
    ("resume", (1,)),
    ("add_image_dataset", ("/tmp", "x")),
    ("add_text_dataset", ("/tmp/x.txt", "x")),
    ("describe_hf_dataset", ("user/name",)),
    ("evaluate", (1, "knn")),
    ("evaluate_baseline", ("pixels", "digits")),
    ("evaluate_model", ("facebook/dinov2-small", "shapes")),
    ("export", (1,)),
    ("push", (1, "someone/model")),
]


@pytest.mark.parametrize("name, args", MUTATING_CALLS)
def test_viewer_is_refused_every_change(tmp_path, name, args):
    studio = Studio(tmp_path / "home")
    guarded = GuardedStudio(studio, Access("viewer"), request=lambda: _Request())
    with pytest.raises(ViewerError, match="viewer mode"):
        getattr(guarded, name)(*args)
    assert studio.jobs() == [] and studio.store.user_datasets() == []
    assert guarded.jobs() == [] and guarded.may_change() is False  # reading stays open


def test_the_guarded_studio_is_a_studio_and_its_lenses_stay_open(tmp_path):
    """Handlers are typed against engine.contract.Studio; the guarded one satisfies it, and a
    viewer reaches the lenses (which read, never change) through it."""
    from engine.contract import Studio as StudioProtocol

    studio = Studio(tmp_path / "home")
    guarded = GuardedStudio(studio, Access("viewer"), request=lambda: _Request())
    assert isinstance(guarded, StudioProtocol)
    assert guarded.lenses is studio.lenses and guarded.paths is studio.paths
    assert "simclr" in guarded.lenses.view_methods()
    assert [c["value"] for c in guarded.lenses.lens_models("attention")] == ["facebook/dino-vits16"]
    with pytest.raises(ViewerError):
        guarded.submit({"method": "simclr", "dataset": "digits"})


def test_viewer_through_the_launched_app(tmp_path):
    """Public mode over HTTP: every mutating named endpoint answers one clear message; the
    owner (the key as a header) gets through; the reading endpoints answer everyone."""
    from gradio_client import Client

    studio = Studio(tmp_path / "home")
    access = Access.resolve("0.0.0.0", environ={"PRETEXT_OWNER_KEY": "k3y"})
    demo = build_app(studio, access)
    demo.queue()
    port = free_port()
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        visitor = Client(url, verbose=False)
        for api_name, args in [
            ("/submit", ({"method": "simclr", "dataset": "digits"},)),
            ("/cancel", (1,)),
            ("/resume", (1,)),
            ("/evaluate", (1, "knn", "")),
            ("/evaluate_baseline", ("pixels", "digits", "resnet18", "knn", 32)),
            ("/evaluate_model", ("facebook/dinov2-small", "shapes", "knn")),
        ]:
            with pytest.raises(Exception, match="not allowed: you are a viewer"):
                visitor.predict(*args, api_name=api_name)
        assert visitor.predict(api_name="/jobs") == []
        owner = Client(url, verbose=False, headers={"X-Pretext-Owner-Key": "k3y"})
        job_id = owner.predict(
            {"method": "simclr", "dataset": "digits", "params": {"steps": 2}}, api_name="/submit"
        )
        assert visitor.predict(job_id, api_name="/job")["status"] == "queued"
    finally:
        demo.close()
        kill_workers(studio)
    # the page starts with the controls off for a viewer
    start = next(c for c in demo.config["components"] if c.get("props", {}).get("value") == "Start")
    assert start["props"]["interactive"] is False


def test_first_log_line_names_the_mode():
    assert Access.resolve("0.0.0.0", environ={}).describe().startswith("public mode")
    assert "nobody can change" in Access.resolve("0.0.0.0", environ={}).describe()
    assert Access.resolve("127.0.0.1", environ={}).describe().startswith("local mode")


def test_private_mode_puts_the_login_in_front(tmp_path):
    from gradio_client import Client

    studio = Studio(tmp_path / "home")
    demo = build_app(studio, Access.resolve("0.0.0.0", auth=("ann", "pw"), environ={}))
    demo.queue()
    port = free_port()
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True, auth=("ann", "pw"))
    url = f"http://127.0.0.1:{port}/"
    try:
        assert httpx.get(url + "gradio_api/info").status_code in (401, 403)
        with pytest.raises(ValueError, match="Could not login"):
            Client(url, verbose=False, auth=("ann", "wrong"))
        owner = Client(url, verbose=False, auth=("ann", "pw"))
        assert (
            owner.predict(
                {"method": "simclr", "dataset": "digits", "params": {"steps": 2}},
                api_name="/submit",
            )
            == 1
        )
    finally:
        demo.close()
        kill_workers(studio)
