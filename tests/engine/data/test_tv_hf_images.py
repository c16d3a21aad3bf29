"""torchvision layouts and Hugging Face image datasets into image stores: each format written
here, small, then added, listed and read back (no downloads)."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.data import tv_datasets
from engine.data.image_store import open_split
from engine.errors import DatasetError

ROOT = Path(__file__).resolve().parents[3]


def write_cifar10(root: Path, per_batch: int = 60, test: int = 50) -> dict[str, np.ndarray]:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = {}
    names = [f"class{i}".encode() for i in range(10)]
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch}, f, protocol=4)
    for fname, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", test)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, n).tolist()
        labels[fname] = (data, np.array(y))
        with open(base / fname, "wb") as f:
            pickle.dump({b"data": data, b"labels": y, b"batch_label": b"x"}, f, protocol=4)
    return labels


def write_stl10(root: Path, n_train=20, n_test=12, n_unl=30) -> None:
    base = root / "stl10_binary"
    base.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unl)):
        rng.integers(0, 256, n * 3 * 96 * 96, dtype=np.uint8).tofile(base / f"{split}_X.bin")
        if split != "unlabeled":
            (np.arange(n) % 10 + 1).astype(np.uint8).tofile(base / f"{split}_y.bin")


def _idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def write_mnist(root: Path, folder: str = "MNIST", gz: bool = False) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", 40), ("t10k", 15)):
        _idx(raw / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), gz)
        _idx(raw / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, gz)


def write_svhn(root: Path) -> None:
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for split, n in (("train", 25), ("test", 10)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(n, 1)  # SVHN: digit 0 is label 10
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})


def write_hf(folder: Path, with_test: bool = True) -> None:
    import datasets
    from PIL import Image

    rng = np.random.default_rng(4)

    def part(n: int) -> datasets.Dataset:
        images = [
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in range(n)
        ]
        features = datasets.Features(
            {
                "img": datasets.Image(),
                "label": datasets.ClassLabel(names=["cat", "dog", "fox"]),
                "note": datasets.Value("string"),
            }
        )
        return datasets.Dataset.from_dict(
            {"img": images, "label": [i % 3 for i in range(n)], "note": ["x"] * n},
            features=features,
        )

    if with_test:
        datasets.DatasetDict({"train": part(30), "test": part(9)}).save_to_disk(str(folder))
    else:
        part(40).save_to_disk(str(folder))


# ---- readers -------------------------------------------------------------------------------


def test_cifar10_stores_its_batches(tmp_path):
    written = write_cifar10(tmp_path / "root")
    heard = []
    report = tv_datasets.import_torchvision(
        "cifar10", tmp_path / "root", "c10", tmp_path / "ds", on_progress=lambda *a: heard.append(a)
    )
    assert heard[-1] == (1.0, "CIFAR10 images stored: 350/350")
    train = open_split(tmp_path / "ds" / "c10", "train")
    test = open_split(tmp_path / "ds" / "c10", "test")
    assert (len(train), len(test), train.size) == (300, 50, 32)
    assert train.class_names == [f"class{i}" for i in range(10)]
    data, labels = written["data_batch_2"]
    assert np.array_equal(train.images[60:120].reshape(60, -1), data)
    assert np.array_equal(train.labels[60:120], labels)
    assert np.array_equal(test.labels, written["test_batch"][1])
    assert report.stores[0]["num_train"] == 300 and "CIFAR10" in report.message()


def test_readding_the_same_files_reuses_the_store(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "root")
    first = tv_datasets.import_torchvision("cifar10", tmp_path / "root", "c10", tmp_path / "ds")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(tv_datasets, "read_layout", no_decoding)
    again = tv_datasets.import_torchvision("cifar10", tmp_path / "root", "c10", tmp_path / "ds")
    assert again.stores == first.stores and again.size == first.size
    with pytest.raises(AssertionError, match="decoded again"):  # another size
        tv_datasets.import_torchvision(
            "cifar10", tmp_path / "root", "c10", tmp_path / "ds", image_size=64
        )
    # A file touched since (a new modification time): it may have changed, so decode again.
    os.utime(tmp_path / "root" / "cifar-10-batches-py" / "test_batch", ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded again"):
        tv_datasets.import_torchvision("cifar10", tmp_path / "root", "c10", tmp_path / "ds")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/pretext-pwned",))


def test_cifar_refuses_a_malicious_pickle(tmp_path):
    write_cifar10(tmp_path / "root", per_batch=5, test=5)
    evil = tmp_path / "root" / "cifar-10-batches-py" / "data_batch_3"
    evil.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}))
    with pytest.raises(DatasetError, match="refused global .*system"):
        tv_datasets.import_torchvision("CIFAR10", tmp_path / "root", "c10", tmp_path / "ds")
    assert not (tmp_path / "ds" / "c10").exists()
    ds = tmp_path / "ds"
    assert not ds.exists() or not list(ds.iterdir())  # nothing half-imported
    with pytest.raises(DatasetError, match="refused global builtins.eval"):
        evil.write_bytes(pickle.dumps(eval, protocol=4))
        tv_datasets.load_cifar_pickle(evil)


def test_stl10_labelled_and_unlabeled_stores(tmp_path):
    write_stl10(tmp_path / "root")
    report = tv_datasets.import_torchvision("STL10", tmp_path / "root", "stl", tmp_path / "ds")
    assert [s["name"] for s in report.stores] == ["stl", "stl-unlabeled"]
    train = open_split(tmp_path / "ds" / "stl", "train")
    assert (len(train), train.size, train.class_names[0]) == (20, 96, "airplane")
    assert train.labels.tolist()[:3] == [0, 1, 2]
    raw = np.fromfile(tmp_path / "root" / "stl10_binary" / "train_X.bin", dtype=np.uint8)
    assert np.array_equal(train.images[0], raw[: 3 * 96 * 96].reshape(3, 96, 96).transpose(0, 2, 1))
    unl = open_split(tmp_path / "ds" / "stl-unlabeled", "train")
    assert len(unl) == 30 and (unl.labels == -1).all() and not unl.class_names
    assert not (tmp_path / "ds" / "stl-unlabeled" / "test.json").exists()


@pytest.mark.parametrize("folder,gz", [("MNIST", False), ("FashionMNIST", True)])
def test_mnist_idx_grey_to_32(tmp_path, folder, gz):
    write_mnist(tmp_path / "root", folder, gz)
    tv_datasets.import_torchvision(folder, tmp_path / "root", "m", tmp_path / "ds")
    train = open_split(tmp_path / "ds" / "m", "train")
    test = open_split(tmp_path / "ds" / "m", "test")
    assert (len(train), len(test), train.size) == (40, 15, 32)
    assert np.array_equal(train.images[:, 0], train.images[:, 2])  # grey: equal channels
    assert test.labels.tolist()[:11] == [*range(10), 0]
    assert train.class_names[0] == ("0" if folder == "MNIST" else "T-shirt/top")


def test_svhn_mat(tmp_path):
    write_svhn(tmp_path / "root")
    tv_datasets.import_torchvision("svhn", tmp_path / "root", "sv", tmp_path / "ds", image_size=48)
    train = open_split(tmp_path / "ds" / "sv", "train")
    assert (len(train), train.size) == (25, 48)
    assert train.labels.tolist()[:10] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]


def test_imagenette_folders(tmp_path):
    from PIL import Image

    for split, n in (("train", 4), ("val", 2)):
        for wnid in ("n01440764", "n03888257"):
            folder = tmp_path / "root" / "imagenette2-160" / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (80, 60), (i * 40, 0, 0)).save(folder / f"{i}.JPEG")
    report = tv_datasets.import_torchvision(
        "Imagenette", tmp_path / "root", "nette", tmp_path / "ds"
    )
    train = open_split(tmp_path / "ds" / "nette", "train")
    assert (len(train), train.size, report.size) == (8, 60, 60)
    assert train.class_names == ["tench", "parachute"]
    assert train.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_bad_input(tmp_path):
    with pytest.raises(DatasetError, match="supported: CIFAR10, CIFAR100, STL10"):
        tv_datasets.import_torchvision("ImageNet", tmp_path, "x", tmp_path / "ds")
    with pytest.raises(DatasetError, match="lacks cifar-10-batches-py/data_batch_1"):
        tv_datasets.import_torchvision("CIFAR10", tmp_path, "x", tmp_path / "ds")
    with pytest.raises(DatasetError, match="lacks MNIST/raw/train-images-idx3-ubyte"):
        tv_datasets.import_torchvision("MNIST", tmp_path, "x", tmp_path / "ds")
    with pytest.raises(DatasetError, match="from 32 to 512"):
        tv_datasets.import_torchvision("SVHN", tmp_path, "x", tmp_path / "ds", image_size=600)


# ---- Hugging Face images --------------------------------------------------------------------


def test_hf_readding_the_same_saved_folder_reuses_the_store(tmp_path, monkeypatch):
    from engine.data import hf_images

    write_hf(tmp_path / "saved")
    first = hf_images.import_hf_images(str(tmp_path / "saved"), "pets", tmp_path / "ds")

    def no_loading(ref):
        raise AssertionError("loaded again")

    monkeypatch.setattr(hf_images, "load_hf", no_loading)
    again = hf_images.import_hf_images(str(tmp_path / "saved"), "pets", tmp_path / "ds")
    assert again == first
    with pytest.raises(AssertionError, match="loaded again"):  # other choices: decoded again
        hf_images.import_hf_images(str(tmp_path / "saved"), "pets", tmp_path / "ds", image_size=64)


def test_hf_saved_dataset_with_classlabel(tmp_path):
    from engine.data.hf_images import import_hf_images

    write_hf(tmp_path / "saved")
    heard = []
    report = import_hf_images(
        str(tmp_path / "saved"), "pets", tmp_path / "ds", on_progress=lambda *a: heard.append(a)
    )
    assert heard[-1] == (1.0, "images decoded: 39/39")
    train = open_split(tmp_path / "ds" / "pets", "train")
    test = open_split(tmp_path / "ds" / "pets", "test")
    assert (len(train), len(test), train.size) == (30, 9, 40)  # median short side
    assert train.class_names == ["cat", "dog", "fox"] and test.labels.tolist()[:4] == [0, 1, 2, 0]
    assert report.image_column == "img" and report.label_column == "label"

    write_hf(tmp_path / "one", with_test=False)
    import_hf_images(str(tmp_path / "one"), "one", tmp_path / "ds", image_size=32)
    assert len(open_split(tmp_path / "ds" / "one", "train")) == 36
    assert len(open_split(tmp_path / "ds" / "one", "test")) == 4  # seeded 10% hold-out

    with pytest.raises(DatasetError, match="holds no images; image columns: img"):
        import_hf_images(str(tmp_path / "saved"), "x", tmp_path / "ds", image_column="note")


def test_hf_without_image_column_lists_columns(tmp_path):
    import datasets

    from engine.data.hf_images import import_hf_images

    datasets.Dataset.from_dict({"text": ["a", "b"], "n": [1, 2]}).save_to_disk(str(tmp_path / "t"))
    with pytest.raises(DatasetError, match=r"no image column \(its columns: text, n\)"):
        import_hf_images(str(tmp_path / "t"), "x", tmp_path / "ds")


def test_hf_offline_hub_name_fails_at_once(tmp_path, monkeypatch):
    from engine.data.hf_images import import_hf_images

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetError, match="cannot be reached"):
        import_hf_images("nobody/no-such-images", "x", tmp_path / "ds")


# ---- the Studio and the CLI -----------------------------------------------------------------


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PRETEXT_HOME=str(home), HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_adds_and_lists_torchvision_and_hf(tmp_path):
    write_cifar10(tmp_path / "root", per_batch=20, test=10)
    write_hf(tmp_path / "saved")
    home = tmp_path / "home"
    out = _cli(home, "datasets", "--add", "torchvision:CIFAR10", "--root", str(tmp_path / "root"))
    assert out.returncode == 0, out.stderr
    assert "'cifar10' (100 train, 10 test, 10 classes)" in out.stdout
    out = _cli(home, "datasets", "--add", str(tmp_path / "saved"), "--name", "pets")
    assert out.returncode == 0, out.stderr
    assert "Added image dataset 'pets'" in out.stdout
    out = _cli(home, "datasets", "--json")
    listed = {d["name"]: d for d in json.loads(out.stdout)}
    assert listed["cifar10"]["num_train"] == 100 and listed["cifar10"]["num_classes"] == 10
    assert listed["pets"]["num_test"] == 9 and listed["pets"]["labelled"]
    out = _cli(home, "datasets", "--add", "torchvision:Places", "--root", str(tmp_path))
    assert out.returncode != 0 and "supported: CIFAR10" in out.stderr + out.stdout


def test_studio_refuses_an_upload_root_on_the_web(tmp_path):
    from engine.access import AccessError, ServerPaths
    from engine.api import Studio

    roots, uploads = tmp_path / "data", tmp_path / "uploads"
    write_cifar10(uploads / "root", per_batch=5, test=5)
    roots.mkdir()
    studio = Studio(tmp_path / "home", paths=ServerPaths.inside([roots], hidden=[uploads]))
    with pytest.raises(AccessError, match="not an upload"):
        studio.add_torchvision_dataset("c", str(uploads / "root"), "CIFAR10")
    with pytest.raises(AccessError):
        studio.add_torchvision_dataset("c", "/etc", "CIFAR10")


def test_a_tiny_simclr_job_trains_on_a_stored_cifar(tmp_path):
    from engine.api import Studio

    write_cifar10(tmp_path / "root", per_batch=20, test=10)
    studio = Studio(tmp_path / "home")
    studio.add_torchvision_dataset("tiny-cifar", str(tmp_path / "root"), "CIFAR10")
    params = {"steps": 3, "batch_size": 16, "image_size": 16, "precision": "fp32"}
    summary = studio.run_foreground(
        {"method": "simclr", "dataset": "tiny-cifar", "params": params, "evals": ["knn"]}
    )
    assert summary["status"] == "completed" and summary["error"] is None
    assert 0.0 <= summary["eval"]["knn_top1"] <= 1.0
    # STL-10's unlabeled store (train only, labels -1) pretrains too.
    write_stl10(tmp_path / "stl", n_train=10, n_test=10, n_unl=40)
    studio.add_torchvision_dataset("stl", str(tmp_path / "stl"), "STL10", image_size=32)
    summary = studio.run_foreground(
        {"method": "simclr", "dataset": "stl-unlabeled", "params": dict(params, steps=2)}
    )
    assert summary["status"] == "completed" and summary["error"] is None


def test_cifar100_fine_labels(tmp_path):
    base = tmp_path / "root" / "cifar-100-python"
    base.mkdir(parents=True)
    rng = np.random.default_rng(5)
    names = [f"c{i}".encode() for i in range(100)]
    with open(base / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": names, b"coarse_label_names": names[:20]}, f)
    for split, n in (("train", 30), ("test", 10)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [(7 * i) % 100 for i in range(n)]
        with open(base / split, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": fine, b"coarse_labels": [0] * n}, f)
    tv_datasets.import_torchvision("CIFAR100", tmp_path / "root", "c100", tmp_path / "ds")
    train = open_split(tmp_path / "ds" / "c100", "train")
    assert len(train.class_names) == 100 and train.labels.tolist()[:3] == [0, 7, 14]


def test_a_failed_write_leaves_nothing_and_keeps_the_earlier_dataset(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        folder = tmp_path / "root" / split / "n01440764"
        folder.mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 40)).save(folder / f"{i}.JPEG")
    ds = tmp_path / "ds"
    tv_datasets.import_torchvision("Imagenette", tmp_path / "root", "nette", ds)
    (tmp_path / "root" / "val" / "n01440764" / "1.JPEG").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"val/n01440764/1.JPEG could not be read"):
        tv_datasets.import_torchvision("Imagenette", tmp_path / "root", "nette", ds)
    assert sorted(p.name for p in ds.iterdir()) == ["nette"]  # no scratch folder left
    assert len(open_split(ds / "nette", "test")) == 3  # the earlier import is whole


def test_download_without_network_is_one_line(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    write_cifar10(tmp_path / "here", per_batch=5, test=5)  # there already: no download
    tv_datasets.import_torchvision("CIFAR10", tmp_path / "here", "c", tmp_path / "ds", True)
    with pytest.raises(DatasetError, match="could not be downloaded .* without network, put"):
        tv_datasets.import_torchvision("CIFAR10", tmp_path / "r", "c", tmp_path / "ds", True)


def test_a_python2_cifar_batch_loads(tmp_path):
    """The official batches were written by Python 2's cPickle: protocol 2, the pixels a str
    (BINSTRING), numpy named as numpy.core.multiarray."""
    import io
    import struct

    class Py2Pickler(pickle._Pickler):
        dispatch = dict(pickle._Pickler.dispatch)

        def save_bytes(self, obj):
            n = len(obj)
            op = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING
            self.write(op + (b"" if n < 256 else struct.pack("<i", n)) + obj)
            self.memoize(obj)

        def save_str(self, obj):
            self.save_bytes(obj.encode("latin1"))

        dispatch[bytes] = save_bytes
        dispatch[str] = save_str

    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump({"data": data, "labels": [3, 4]})
    raw = buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in raw
    (tmp_path / "batch").write_bytes(raw)
    batch = tv_datasets.load_cifar_pickle(tmp_path / "batch")
    assert np.array_equal(batch[b"data"], data) and batch[b"labels"] == [3, 4]


def test_hf_string_labels_and_a_path_only_image_outside_the_roots(tmp_path):
    import datasets
    from PIL import Image

    from engine.data.hf_images import _open, import_hf_images

    files = []
    for i in range(6):
        files.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (36, 50), (i * 30, 0, 0)).save(files[-1])
    kinds = ["owl", "cat", "owl", "cat", "owl", "cat"]
    ds = datasets.Dataset.from_dict({"pic": files, "kind": kinds}).cast_column(
        "pic", datasets.Image()
    )
    ds.save_to_disk(str(tmp_path / "saved"))
    report = import_hf_images(str(tmp_path / "saved"), "owls", tmp_path / "ds", label_column="kind")
    assert report.class_names == ["cat", "owl"] and (report.num_train, report.num_test) == (5, 1)
    assert open_split(tmp_path / "ds" / "owls", "train").size == 36
    with pytest.raises(DatasetError, match="outside the folders this studio may read"):
        _open({"bytes": None, "path": files[0]}, 0, "saved", lambda path: False)
