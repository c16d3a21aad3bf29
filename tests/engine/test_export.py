"""Export: a DINO run and a SimCLR run load in a plain Python process (no engine, no webapp)
and give the studio's embeddings; every conv method's load.py matches its `embed`; the model
card's YAML has the Hub fields; bad input is refused with what to do."""

import json
import subprocess
import sys
import zipfile

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from engine.api import Studio
from engine.config import build_config
from engine.data.datasets import load_dataset
from engine.errors import JobError
from engine.export import conv_trunk, export_conv, export_run, is_conv, zip_folder
from engine.registry import get_method
from engine.runs import open_run

TINY = {
    "steps": 6,
    "batch_size": 16,
    "image_size": 16,
    "warmup_steps": 1,
    "precision": "fp32",
    "checkpoint_every": 3,
}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A SimCLR run on digits (evaluated with k-NN) and a DINO run (ViT) on shapes."""
    torch.set_num_threads(1)
    studio = Studio(tmp_path_factory.mktemp("home"))
    simclr = studio.run_foreground(
        {
            "method": "simclr",
            "dataset": "digits",
            "preset": "tiny",
            "params": TINY,
            "evals": ["knn"],
        }
    )
    dino = studio.run_foreground(
        {"method": "dino", "dataset": "shapes", "preset": "tiny", "params": TINY}
    )
    assert simclr["status"] == dino["status"] == "completed"
    return studio, simclr["job_id"], dino["job_id"]


def batch(dataset: str) -> torch.Tensor:
    return load_dataset(dataset, "test", 16).images[:8]  # uint8 (8, 3, 16, 16)


def run_plain(code: str, cwd) -> None:
    """Run `code` in a fresh interpreter that cannot import the studio, and check it did not."""
    code += (
        "\nimport sys\n"
        "assert not any(m.split('.')[0] in ('engine', 'webapp') for m in sys.modules), 'studio'\n"
    )
    done = subprocess.run(
        [sys.executable, "-E", "-s", "-c", code],  # the cwd on sys.path, as for `python` run there
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_simclr_export_loads_with_plain_torch(runs, tmp_path):
    studio, simclr, _ = runs
    folder = export_run(studio.home, studio.store, simclr, tmp_path / "simclr")
    assert {"README.md", "config.json", "load.py", "model.safetensors", "loss_curve.png"} <= {
        p.name for p in folder.iterdir()
    }
    images = batch("digits")
    save_file({"images": images}, str(tmp_path / "batch.safetensors"))
    run_plain(
        f"import sys; sys.path.insert(0, {str(folder)!r})\n"
        "from safetensors.torch import load_file, save_file\n"
        "from load import load_encoder, preprocess\n"
        "import torch\n"
        f"images = load_file({str(tmp_path / 'batch.safetensors')!r})['images']\n"
        "with torch.no_grad():\n"
        "    features = load_encoder()(preprocess(images))\n"
        f"save_file({{'features': features}}, {str(tmp_path / 'out.safetensors')!r})\n",
        cwd=tmp_path,
    )
    method, _ = open_run(studio.store.get_job(simclr))
    expected = method.embed(images)
    got = load_file(str(tmp_path / "out.safetensors"))["features"]
    assert got.shape == expected.shape == (8, 256)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_a_dino_export_loads_with_automodel(runs, tmp_path):
    studio, _, dino = runs
    folder = export_run(studio.home, studio.store, dino, tmp_path / "dino")
    assert (folder / "preprocessor_config.json").exists()
    images = batch("shapes")
    save_file({"images": images}, str(tmp_path / "batch.safetensors"))
    run_plain(
        "import torch\n"
        "from safetensors.torch import load_file, save_file\n"
        "from transformers import AutoImageProcessor, AutoModel\n"
        f"model = AutoModel.from_pretrained({str(folder)!r}).eval()\n"
        f"processor = AutoImageProcessor.from_pretrained({str(folder)!r})\n"
        f"images = load_file({str(tmp_path / 'batch.safetensors')!r})['images']\n"
        "inputs = processor(images=list(images), return_tensors='pt')\n"
        "with torch.no_grad():\n"
        "    features = model(**inputs).last_hidden_state[:, 0]\n"
        f"save_file({{'features': features.contiguous()}}, "
        f"{str(tmp_path / 'out.safetensors')!r})\n",
        cwd=tmp_path,
    )
    method, _ = open_run(studio.store.get_job(dino))
    expected = method.embed(images)
    got = load_file(str(tmp_path / "out.safetensors"))["features"]
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_the_model_card_has_hub_metadata_and_the_evaluation(runs, tmp_path):
    studio, simclr, dino = runs
    folder = export_run(studio.home, studio.store, simclr, tmp_path / "simclr", step=3)
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["library_name"] == "pytorch"
    assert {"self-supervised", "simclr"} <= set(meta["tags"])
    assert meta["datasets"] == ["digits"] and meta["metrics"] == ["accuracy"]
    assert meta["pipeline_tag"] == "image-feature-extraction"
    for heading in ("## The method", "## How to load it", "## Evaluation", "## Training curve"):
        assert heading in text
    assert "| pixels | digits |" in text  # against the baselines
    assert "(this run, evaluated at step 6)" in text  # the step-3 export says so
    assert "from load import load_encoder, preprocess" in text
    training = json.loads((folder / "training_config.json").read_text())
    assert training["step"] == 3 and training["config"]["temperature"] == 0.2
    from PIL import Image

    with Image.open(folder / "loss_curve.png") as curve:
        assert curve.format == "PNG" and curve.size == (640, 360)
    dino_folder = export_run(studio.home, studio.store, dino, tmp_path / "dino")
    dino_meta = yaml.safe_load((dino_folder / "README.md").read_text().split("---\n")[1])
    assert dino_meta["library_name"] == "transformers" and "dino" in dino_meta["tags"]
    assert "metrics" not in dino_meta  # not evaluated
    assert "Not evaluated yet" in (dino_folder / "README.md").read_text()


def test_the_zip_holds_the_folder(runs, tmp_path):
    studio, simclr, _ = runs
    folder = export_run(studio.home, studio.store, simclr, tmp_path / "simclr")
    with zipfile.ZipFile(zip_folder(folder)) as archive:
        names = set(archive.namelist())
    assert {"simclr/README.md", "simclr/load.py", "simclr/model.safetensors"} <= names


def test_bad_exports_are_refused_with_what_to_do(runs, tmp_path):
    studio, simclr, _ = runs
    with pytest.raises(JobError, match=r"no checkpoint of step 4; its checkpoints are at steps"):
        export_run(studio.home, studio.store, simclr, tmp_path / "a", step=4)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    with pytest.raises(JobError, match="exists and is not empty"):
        export_run(studio.home, studio.store, simclr, tmp_path / "full")
    assert (tmp_path / "full" / "x.txt").read_text() == "mine"
    queued = studio.submit({"method": "simclr", "dataset": "digits", "params": TINY})
    with pytest.raises(JobError, match="has no checkpoint yet"):
        export_run(studio.home, studio.store, queued, tmp_path / "b")
    with pytest.raises(JobError, match="no job 999"):
        export_run(studio.home, studio.store, 999, tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


CONV_CASES = [
    ("simclr", {}),
    ("simclr", {"backbone": "resnet18", "small_stem": False, "image_size": 32}),
    ("moco", {}),
    ("byol", {}),
    ("simsiam", {}),
    ("barlowtwins", {}),
    ("vicreg", {}),
    ("rotation", {}),
    ("jigsaw", {}),
    ("colorization", {"backbone": "resnet18"}),
    ("dino", {"backbone": "convnet"}),
]


@pytest.mark.parametrize(("name", "params"), CONV_CASES, ids=lambda v: str(v))
def test_every_conv_method_exports_a_trunk_its_load_py_rebuilds(name, params, tmp_path):
    import importlib.util

    cls = get_method(name)
    config = build_config(cls.Config, "tiny", {"image_size": 16, **params})
    torch.manual_seed(0)
    method = cls(config, {"num_classes": 10, "image_size": config.image_size}).eval()
    assert is_conv(method)
    trunk, _ = conv_trunk(method)
    for module in trunk.modules():  # non-trivial batch-norm statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    export_conv(method, tmp_path)
    spec = importlib.util.spec_from_file_location(f"load_{name}", tmp_path / "load.py")
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    images = torch.randint(0, 256, (4, 3, config.image_size, config.image_size), dtype=torch.uint8)
    with torch.no_grad():
        got = load.load_encoder()(load.preprocess(images))
    torch.testing.assert_close(got, method.embed(images), atol=1e-4, rtol=1e-4)


def test_studio_export_writes_into_its_exports_folder_and_zips(runs):
    studio, simclr, _ = runs
    first = studio.export(simclr, make_zip=True)
    assert first["step"] == 6 and first["folder"].endswith(f"exports/job-{simclr}-step-6")
    assert "README.md" in first["files"] and first["zip"].endswith(".zip")
    again = studio.export(simclr, step=3)  # another checkpoint: its own folder
    assert again["step"] == 3 and again["zip"] is None and again["folder"] != first["folder"]
    assert studio.export(simclr)["folder"] == first["folder"]  # the same one, replaced


def test_the_web_cannot_choose_where_an_export_is_written(runs, tmp_path):
    from engine.access import AccessError, ServerPaths

    studio, simclr, _ = runs
    web = Studio(studio.home.root, paths=ServerPaths.inside([tmp_path]))
    with pytest.raises(AccessError, match="exports folder only"):
        web.export(simclr, out_dir=tmp_path / "mine")
    assert not (tmp_path / "mine").exists()


def test_studio_push_offline_refuses_before_exporting(runs):
    from engine.hub_push import HubPushError

    studio, simclr, _ = runs
    exports = studio.home.root / "exports"
    before = sorted(exports.iterdir()) if exports.exists() else []
    with pytest.raises(HubPushError, match="HF_HUB_OFFLINE"):
        studio.push(simclr, "someone/model", token="hf_x")
    with pytest.raises(HubPushError, match="USER/NAME"):
        studio.push(simclr, "no-slash", token="hf_x")
    after = sorted(exports.iterdir()) if exports.exists() else []
    assert after == before  # nothing was exported


def cli(*args, env=None):
    import os

    from tests.conftest import ROOT

    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env=env or dict(os.environ),
    )


def test_the_cli_exports_and_refuses_a_push_in_one_line(runs, tmp_path):
    import os

    studio, simclr, _ = runs
    home = str(studio.home.root)
    out = cli("export", str(simclr), "--out", str(tmp_path / "x"), "--zip", "--home", home)
    assert out.returncode == 0, out.stderr
    assert "exported to" in out.stdout and (tmp_path / "x.zip").exists()
    again = cli("export", str(simclr), "--out", str(tmp_path / "x"), "--home", home)
    assert (
        again.returncode == 2 and again.stderr.startswith("error: ") and "not empty" in again.stderr
    )
    offline = cli("push", str(simclr), "--repo", "me/model", "--home", home)
    assert offline.returncode == 2 and "HF_HUB_OFFLINE is set" in offline.stderr
    assert offline.stderr.count("\n") == 1  # one line, no traceback
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env["HF_HOME"] = str(tmp_path / "hf-home")  # no saved login
    no_token = cli("push", str(simclr), "--repo", "me/model", "--home", home, env=env)
    assert no_token.returncode == 2 and "no Hugging Face token" in no_token.stderr


@pytest.mark.parametrize("which", ["simclr", "dino"])
def test_the_cards_loading_snippet_runs_as_written(runs, tmp_path, which):
    import re

    studio, simclr, dino = runs
    folder = export_run(
        studio.home, studio.store, {"simclr": simclr, "dino": dino}[which], tmp_path / which
    )
    card = (folder / "README.md").read_text()
    snippet = re.search(r"## How to load it\n\n```python\n(.*?)```", card, re.S).group(1)
    images = "import torch\nimages = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)\n" + (
        "images = list(images)\n" if which == "dino" else ""
    )
    run_plain(images + snippet + "assert features.shape[0] == 2\n", cwd=folder)


def test_studio_push_uploads_the_whole_export_to_a_fake_hub(runs, tmp_path):
    """Studio.push end to end against tests/engine/test_hub_push.py's fake of the Hub's API."""
    import threading
    from http.server import ThreadingHTTPServer

    from tests.conftest import ROOT
    from tests.engine.test_hub_push import FakeHub

    studio, simclr, _ = runs
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    FakeHub.calls, FakeHub.repos = [], {}
    code = (
        "import json\nfrom engine.api import Studio\n"
        f"print(json.dumps(Studio({str(studio.home.root)!r}).push({simclr}, 'me/simclr', "
        "token='hf_fake')))\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={
                "PATH": "/usr/bin:/bin",
                "HF_ENDPOINT": endpoint,
                "HF_HUB_OFFLINE": "0",
                "HF_HOME": str(tmp_path / "hf-home"),
                "OMP_NUM_THREADS": "1",
            },
        )
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["url"] == f"{endpoint}/me/simclr" and result["step"] == 6
    uploaded = FakeHub.repos["me/simclr"]["files"]
    folder = studio.home.root / "exports" / f"job-{simclr}-step-6"
    assert uploaded == {p.name: p.read_bytes() for p in folder.iterdir()}
    assert {"README.md", "load.py", "model.safetensors"} <= set(uploaded)
    assert FakeHub.repos["me/simclr"]["request"].get("visibility") != "private"
