"""Push to the Hub: refused at once offline, without a token or with a bad repo id (one line,
nothing sent); and the real create_repo + upload_folder calls against a local fake of the
Hub's HTTP API (the four endpoints huggingface_hub 2.4 uses for a small folder)."""

import base64
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import huggingface_hub
import pytest

from engine.hub_push import HubPushError, push, ready
from tests.conftest import ROOT


@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "README.md").write_text("---\nlibrary_name: pytorch\ntags:\n- simclr\n---\n\n# card\n")
    (out / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (out / "load.py").write_text("print('load')\n")
    return out


@pytest.fixture
def nothing_sent(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a request was made")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", refuse)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", refuse)


def test_offline_the_push_is_refused_at_once(folder, nothing_sent):
    assert huggingface_hub.constants.is_offline_mode()  # tests/conftest.py
    with pytest.raises(HubPushError, match="HF_HUB_OFFLINE is set") as refused:
        push(folder, "someone/model", token="hf_secret_value")
    assert "\n" not in str(refused.value) and "hf_secret_value" not in str(refused.value)


def test_without_a_token_the_push_is_refused(folder, nothing_sent, monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(HubPushError, match="no Hugging Face token: paste a write token"):
        push(folder, "someone/model")
    with pytest.raises(HubPushError, match="no Hugging Face token"):
        ready("someone/model", token="   ")
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert ready("someone/model") == "hf_from_env"
    assert ready("someone/model", token="hf_given") == "hf_given"


@pytest.mark.parametrize("repo", ["model", "a/b/c", "/model", "me/", "me/bad name", "me/x..y", 7])
def test_a_malformed_repo_id_is_refused(repo, folder, nothing_sent):
    with pytest.raises(HubPushError, match="write it as USER/NAME"):
        push(folder, repo, token="hf_x")


def test_a_folder_that_is_not_an_export_is_refused(tmp_path, nothing_sent):
    with pytest.raises(HubPushError, match="not an export"):
        push(tmp_path, "someone/model", token="hf_x")


class FakeHub(BaseHTTPRequestHandler):
    """The Hub's endpoints create_repo and upload_folder call; records what it receives."""

    calls: list[tuple[str, str, str]] = []  # (method, path, Authorization header)
    repos: dict[str, dict] = {}

    def log_message(self, *args):
        pass

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        FakeHub.calls.append(("POST", self.path, self.headers.get("Authorization", "")))
        endpoint = f"http://{self.headers['Host']}"
        if self.path == "/api/repos/create":
            request = json.loads(body)
            repo_id = f"{request['organization']}/{request['name']}"
            FakeHub.repos[repo_id] = {"request": request, "files": {}}
            return self.answer(200, {"url": f"{endpoint}/{repo_id}", "name": repo_id})
        if self.path == "/api/validate-yaml":
            return self.answer(200, {})
        if "/preupload/" in self.path:
            files = json.loads(body)["files"]
            return self.answer(
                200,
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in files
                    ]
                },
            )
        if "/commit/" in self.path:
            repo_id = self.path.split("/api/models/")[1].split("/commit/")[0]
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    content = base64.b64decode(item["value"]["content"])
                    FakeHub.repos[repo_id]["files"][item["value"]["path"]] = content
            return self.answer(
                200, {"commitUrl": f"{endpoint}/{repo_id}/commit/abc", "commitOid": "abc" * 13}
            )
        return self.answer(404, {"error": f"fake hub: no {self.path}"})


def test_the_push_creates_the_repo_and_uploads_every_file(folder, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    FakeHub.calls, FakeHub.repos = [], {}
    code = (
        "from engine.hub_push import push\n"
        f"print(push({str(folder)!r}, 'someone/my-model', token='hf_fake', private=True))\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={
                "PATH": "/usr/bin:/bin",
                "HF_ENDPOINT": endpoint,
                "HF_HUB_OFFLINE": "0",
                "HF_HOME": str(tmp_path / "hf-home"),
                "HF_HUB_DISABLE_TELEMETRY": "1",
            },
        )
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"{endpoint}/someone/my-model"
    repo = FakeHub.repos["someone/my-model"]
    assert repo["request"]["visibility"] == "private" and repo["request"]["type"] == "model"
    assert repo["files"] == {p.name: p.read_bytes() for p in folder.iterdir()}
    assert {auth for _, _, auth in FakeHub.calls} == {"Bearer hf_fake"}
    assert "hf_fake" not in done.stderr
