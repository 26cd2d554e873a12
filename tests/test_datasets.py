"""Datasets beside CIFAR-100: their declarations, Fashion-MNIST's idx reader (on generated files
and on Debian's copy when installed), CIFAR-10's archive (generated), the superclass mappings of
each class set, and a smoke training on each dataset."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sdml.data import datasets
from sdml.data.cifar import CIFAR10, read_archive
from sdml.data.datasets import DATASETS, SPECS, get_spec
from sdml.data.fashion_mnist import (FASHION_MNIST, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES,
                                     TRAIN_LABELS, locate, read_fashion_mnist)
from sdml.data.idx import parse_idx, read_idx
from sdml.data.load import load_dataset, stratified_subset
from sdml.data.spec import DatasetFile
from sdml.hierarchy.classes import CIFAR10_NAMES, FASHION_MNIST_NAMES
from sdml.hierarchy.resolve import resolve_superclasses
from sdml.hierarchy.superclasses import cifar_superclasses, from_json, load_mapping
from sdml.training.config import make_config

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


# ----------------------------------------------------------------------------- idx builders

def idx(array: np.ndarray) -> bytes:
    """The idx bytes of a uint8 array (written independently of the reader)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def write_fashion(folder: Path, n_train=40, n_test=20, seed=0, gz=True, labels=None):
    """Four idx files of random 28x28 images (balanced labels) and a spec with their md5."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    content = {}
    for images, labels_name, n in ((TRAIN_IMAGES, TRAIN_LABELS, n_train),
                                   (TEST_IMAGES, TEST_LABELS, n_test)):
        y = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        content[images] = idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        content[labels_name] = idx(y if labels is None else labels(y))
    for name, data in content.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    files = tuple(DatasetFile(f.name, md5(content[f.name])) for f in FASHION_MNIST.files)
    return dataclasses.replace(FASHION_MNIST, files=files, system_dirs=()), content


# ----------------------------------------------------------------------------- declarations

def test_every_dataset_is_declared_consistently():
    assert set(DATASETS) == {"cifar100", "cifar10", "fashion-mnist", "synthetic"}
    for spec in SPECS.values():
        c, h, w = spec.shape
        assert len(spec.class_names) == spec.num_classes and spec.channels == c
        assert spec.mean is None or len(spec.mean) == len(spec.std) == c
        sc = resolve_superclasses(spec.superclasses, spec.wordnet_k, spec.classes)
        assert sc.of.shape == (spec.num_classes,) and sc.dataset == spec.classes
    assert get_spec("fashion-mnist").shape == (1, 28, 28)
    with pytest.raises(ValueError, match=r"data = 'mnist'.*allowed: cifar100, synthetic, cifar10, "
                                         r"fashion-mnist"):
        get_spec("mnist")


def test_config_defaults_follow_the_dataset():
    cfg = make_config("smoke", data="fashion-mnist")
    assert (cfg.superclasses, cfg.wordnet_k) == ("wordnet", 3)
    assert (make_config("smoke", data="cifar10").superclasses, make_config("paper").superclasses,
            make_config("paper").wordnet_k) == ("wordnet", "cifar", 20)
    with pytest.raises(ValueError, match="superclasses: 'cifar'.*fashion-mnist has none"):
        make_config("smoke", data="fashion-mnist", superclasses="cifar")
    with pytest.raises(ValueError, match=r"wordnet_k: 12; allowed: an integer 2\.\.9"):
        make_config("smoke", data="fashion-mnist", wordnet_k=12)


# ----------------------------------------------------------------------------- the idx reader

def test_generated_idx_files_read_back_gz_or_not(tmp_path):
    for gz in (True, False):
        spec, content = write_fashion(tmp_path / f"gz{gz}" / "fashion-mnist", gz=gz)
        arrays = read_fashion_mnist(locate(tmp_path / f"gz{gz}", False, spec), spec)
        images = np.frombuffer(content[TRAIN_IMAGES][16:], np.uint8).reshape(40, 1, 28, 28)
        np.testing.assert_array_equal(arrays.train_x, images)
        assert arrays.train_y.tolist() == list(content[TRAIN_LABELS][8:])
        assert arrays.test_x.shape == (20, 1, 28, 28) and arrays.fine_names == FASHION_MNIST_NAMES


def test_files_beside_the_data_folder_are_found(tmp_path):
    spec, _ = write_fashion(tmp_path, gz=False)  # the files directly in the data folder
    paths = locate(tmp_path, False, spec)
    assert paths[TRAIN_IMAGES] == tmp_path / TRAIN_IMAGES


def test_wrong_md5_is_refused_before_parsing(tmp_path):
    bad = tmp_path / "x-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01garbage that would not parse"))
    with pytest.raises(ValueError, match=r"x-idx1-ubyte.gz \(decompressed\): md5 is .*expected 0+"):
        read_idx(bad, "0" * 32, 1)


@pytest.mark.parametrize("data, ndim, match", [
    (bytes([0, 0, 0x08, 3]) + (2).to_bytes(4, "big"), 3, "too short"),
    (bytes([8, 0, 0x08, 1]) + (2).to_bytes(4, "big") + b"ab", 1, "magic number 08000801"),
    (bytes([0, 0, 0x0D, 1]) + (2).to_bytes(4, "big") + b"ab", 1, "magic number 00000d01"),
    (bytes([0, 0, 0x08, 3]) + (2).to_bytes(4, "big") * 3 + b"ab", 1, "magic number 00000803"),
    (bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") * 2 + b"abc", 2, r"dimensions \(2, 2\).*3 bytes"),
    (idx(np.zeros((3, 4, 4), np.uint8))[:-5], 3, r"dimensions \(3, 4, 4\).*43 bytes"),
])
def test_malformed_idx_names_the_file_and_the_fault(tmp_path, data, ndim, match):
    path = tmp_path / "f-idx"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=match) as err:
        read_idx(path, md5(data), ndim)
    assert str(path) in str(err.value)


def test_truncated_gzip_is_refused(tmp_path):
    path = tmp_path / "f-idx.gz"
    path.write_bytes(gzip.compress(idx(np.zeros((5, 28, 28), np.uint8)))[:-20])
    with pytest.raises(ValueError, match=f"{path}: not a complete gzip file"):
        read_idx(path, "0" * 32, 3)


def test_label_range_and_counts_are_checked(tmp_path):
    spec, _ = write_fashion(tmp_path / "a" / "fashion-mnist", labels=lambda y: y + 1)  # 1..10
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.9, got up to 10"):
        read_fashion_mnist(locate(tmp_path / "a", False, spec), spec)
    spec, content = write_fashion(tmp_path / "b" / "fashion-mnist")
    short = idx(np.zeros(39, np.uint8))
    (tmp_path / "b" / "fashion-mnist" / f"{TRAIN_LABELS}.gz").write_bytes(gzip.compress(short))
    files = tuple(DatasetFile(f.name, md5(short) if f.name == TRAIN_LABELS else f.md5)
                  for f in spec.files)
    spec = dataclasses.replace(spec, files=files)
    with pytest.raises(ValueError, match="40 images but 39 labels"):
        read_fashion_mnist(locate(tmp_path / "b", False, spec), spec)


def test_missing_files_without_download_say_where_they_were_looked_for(tmp_path):
    spec = dataclasses.replace(FASHION_MNIST, system_dirs=(str(tmp_path / "system"),))
    with pytest.raises(FileNotFoundError) as err:
        locate(tmp_path, False, spec)
    message = str(err.value)
    assert str(tmp_path / "fashion-mnist" / TRAIN_IMAGES) in message
    assert str(tmp_path / "system" / TRAIN_IMAGES) in message and "dataset-fashion-mnist" in message


@pytest.mark.skipif(not (DEBIAN / f"{TRAIN_IMAGES}.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_the_debian_copy_reads_with_the_declared_checksums(tmp_path):
    arrays = load_dataset("fashion-mnist", tmp_path, download=False)  # found in the system folder
    assert arrays.train_x.shape == (60000, 1, 28, 28) and arrays.test_x.shape == (10000, 1, 28, 28)
    assert np.bincount(arrays.train_y).tolist() == [6000] * 10
    assert np.bincount(arrays.test_y).tolist() == [1000] * 10
    x = arrays.train_x.astype(np.float64) / 255  # the declared statistics are the data's
    assert abs(x.mean() - FASHION_MNIST.mean[0]) < 5e-4 and abs(x.std() - FASHION_MNIST.std[0]) < 5e-4
    # reference superclasses: clothing, footwear, bag (the committed WordNet k = 3 mapping)
    assert arrays.coarse_names == ("clothing.n.01", "footwear.n.02", "bag.n.04")
    assert np.bincount(arrays.test_coarse).tolist() == [6000, 3000, 1000]
    assert list(tmp_path.iterdir()) == []  # nothing downloaded or copied


def test_stratified_subset_takes_the_first_of_each_class(tmp_path):
    spec, _ = write_fashion(tmp_path / "fashion-mnist", n_train=60, n_test=30)
    arrays = read_fashion_mnist(locate(tmp_path, False, spec), spec)
    sub = stratified_subset(arrays, 2, 1)
    assert np.bincount(sub.train_y).tolist() == [2] * 10 and len(sub.test_y) == 10
    first = [np.flatnonzero(arrays.train_y == c)[:2] for c in range(10)]
    np.testing.assert_array_equal(np.sort(np.concatenate(first)),
                                  [i for i in range(60) if arrays.train_y[i] in sub.train_y
                                   and i in np.concatenate(first)])
    np.testing.assert_array_equal(sub.train_x, arrays.train_x[np.sort(np.concatenate(first))])


# ----------------------------------------------------------------------------- CIFAR-10

def cifar10_archive(folder: Path, per_batch=20, n_test=20, seed=0) -> str:
    rng = np.random.default_rng(seed)
    members = {"cifar-10-batches-py/batches.meta": {"label_names": list(CIFAR10_NAMES),
                                                    "num_cases_per_batch": per_batch}}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        members[f"cifar-10-batches-py/{name}"] = {
            "labels": (np.arange(n) % 10).tolist(),
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            payload = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return md5(path.read_bytes())


def test_generated_cifar10_archive_reads_back(tmp_path):
    digest = cifar10_archive(tmp_path)
    arrays = read_archive(tmp_path / "cifar-10-python.tar.gz", digest, "cifar10")
    assert arrays.train_x.shape == (100, 3, 32, 32) and arrays.test_x.shape == (20, 3, 32, 32)
    assert arrays.fine_names == CIFAR10_NAMES and arrays.train_y.tolist()[:12] == [*range(10), 0, 1]
    with pytest.raises(ValueError, match="md5 is"):
        read_archive(tmp_path / "cifar-10-python.tar.gz", CIFAR10.files[0].md5, "cifar10")


# ----------------------------------------------------------------------------- superclass mappings

def test_a_mapping_for_another_dataset_is_refused_naming_both(tmp_path):
    fashion = resolve_superclasses("wordnet", 3, "fashion-mnist")
    assert [fashion.members(i) for i in range(3)] == [
        ["t-shirt_top", "trouser", "pullover", "dress", "coat", "shirt"],
        ["sandal", "sneaker", "ankle_boot"], ["bag"]]
    path = tmp_path / "fashion.json"
    path.write_text(json.dumps(fashion.to_json()))
    with pytest.raises(ValueError, match="made for the classes of 'fashion-mnist'.*'cifar100'"):
        load_mapping(path, "cifar100")
    legacy = cifar_superclasses().to_json()
    del legacy["dataset"]  # a mapping without the field is recognised by its class names
    with pytest.raises(ValueError, match="made for the classes of 'cifar100'.*'cifar10'"):
        from_json(legacy, "old.json", "cifar10")
    with pytest.raises(ValueError, match="made for the classes of 'fashion-mnist'"):
        resolve_superclasses(str(path), 20, "cifar100")


def test_committed_mappings_match_the_committed_trees():
    from sdml.hierarchy.wordnet import derive_superclasses, load_tree, mapping_path

    for name in ("fashion-mnist", "cifar10"):
        spec = get_spec(name)
        derived = derive_superclasses(load_tree(dataset=name), spec.wordnet_k)
        assert load_mapping(mapping_path(name, spec.wordnet_k), name).to_json() == derived.to_json()


# ----------------------------------------------------------------------------- smoke trainings

def _train(tmp_path, monkeypatch, data, spec, **overrides):
    from sdml.training.train import train

    monkeypatch.setitem(datasets.SPECS, data, spec)
    cfg = make_config("smoke", data=data, data_dir=str(tmp_path / "data"), epochs=1,
                      max_steps_per_epoch=2, batch_size=16, download=False, **overrides)
    return train(cfg, tmp_path / "run", progress=False, log=lambda *a: None)


def test_smoke_training_on_generated_fashion_mnist(tmp_path, monkeypatch):
    spec, _ = write_fashion(tmp_path / "data" / "fashion-mnist")
    rows = _train(tmp_path, monkeypatch, "fashion-mnist", spec, method="superclass-soft")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert rows[-1]["epoch"] == 1 and saved["superclasses"]["dataset"] == "fashion-mnist"
    probs = torch.load(tmp_path / "run" / "predictions.pt", weights_only=True)
    assert probs["probs"].shape[-1] == 10


def test_smoke_training_on_a_generated_cifar10_archive(tmp_path, monkeypatch):
    digest = cifar10_archive(tmp_path / "data")
    spec = dataclasses.replace(CIFAR10, files=(DatasetFile("cifar-10-python.tar.gz", digest),))
    rows = _train(tmp_path, monkeypatch, "cifar10", spec)
    assert rows[-1]["epoch"] == 1 and len(rows[-1]["test_acc"]) == 2


def test_nothing_is_written_before_the_data_checks_pass(tmp_path, monkeypatch):
    spec, _ = write_fashion(tmp_path / "data" / "fashion-mnist")
    broken = dataclasses.replace(spec, files=(DatasetFile(TRAIN_IMAGES, "0" * 32), *spec.files[1:]))
    with pytest.raises(ValueError, match="md5 is"):
        _train(tmp_path, monkeypatch, "fashion-mnist", broken)
    assert not (tmp_path / "run").exists()


def test_grayscale_peers_have_one_input_channel_looped_or_fused():
    from sdml.models.fused import GroupedPeers, SharedInput
    from sdml.models.peers import build_peers

    kw = dict(depth=8, num_classes=10, width=4, in_channels=1)
    loop = build_peers(2, "loop", torch.Generator().manual_seed(0), **kw).eval()
    fused = build_peers(2, "grouped", torch.Generator().manual_seed(0), **kw).eval()
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    assert loop.peers[0].conv1.weight.shape[1] == 1
    torch.testing.assert_close(fused(x), loop(x), atol=1e-5, rtol=1e-4)
    two_runs = GroupedPeers(2, runs=2, generator=torch.Generator().manual_seed(0), **kw).eval()
    two_runs.load_peer_state_dicts(loop.peer_state_dicts() * 2)
    out = SharedInput(two_runs)(x)  # (R*K, B, C): both runs hold the same peers
    torch.testing.assert_close(out[:2], loop(x), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out[2:], loop(x), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match=r"expected \(B, 2, H, W\), 1 channel"):
        two_runs(torch.zeros(2, 3, 28, 28))


def test_results_of_a_fashion_run_read_its_superclasses_and_show_no_paper_numbers(tmp_path,
                                                                                   monkeypatch):
    from sdml.results.report import results_markdown
    from sdml.results.summary import load_runs, superclass_accuracy_frame

    spec, _ = write_fashion(tmp_path / "data" / "fashion-mnist")
    _train(tmp_path, monkeypatch, "fashion-mnist", spec, method="none")
    run_list = load_runs(tmp_path)
    text = results_markdown(run_list)
    assert "71.51" not in text and "not run" not in text  # Table 1 is CIFAR-100's
    assert "clothing.n.01, footwear.n.02, bag.n.04" in text
    assert "about 40 %" in text  # (6 * 5/9 + 3 * 2/9 + 0) / 10 classes: uniform errors
    frame = superclass_accuracy_frame(run_list)
    assert sorted(set(frame["superclass"])) == ["bag.n.04", "clothing.n.01", "footwear.n.02"]


def test_figures_show_grayscale_and_the_dataset_pairs(tmp_path):
    from sdml.notebooks.viz import figure3_for, figure3_pairs, superclass_of_arrays, to_display

    gray = torch.arange(12, dtype=torch.uint8).reshape(1, 3, 4) * 20
    shown = to_display(gray)
    assert shown.shape == (3, 4, 3) and (shown[..., 0] == shown[..., 2]).all()
    np.testing.assert_allclose(shown[..., 1], gray[0].numpy() / 255)
    spec, _ = write_fashion(tmp_path / "fashion-mnist")
    arrays = load_dataset_from(tmp_path, spec)
    assert figure3_for(arrays.fine_names)[0][:2] == ("t-shirt_top", "shirt")
    of = superclass_of_arrays(arrays)
    examples = figure3_pairs(arrays, torch.Generator().manual_seed(0))
    a, b = FASHION_MNIST_NAMES.index("t-shirt_top"), FASHION_MNIST_NAMES.index("sneaker")
    assert [e.name_b for e in examples] == ["shirt", "sneaker", "sneaker"] and of[a] != of[b]
    assert examples[0].mixed.shape == (1, 28, 28)


def load_dataset_from(root: Path, spec):
    """Generated Fashion-MNIST with its reference superclasses, as load_dataset fills them in."""
    from sdml.data.load import _with_reference

    return _with_reference(read_fashion_mnist(locate(root, False, spec), spec), spec)


def test_a_subset_larger_than_the_classes_warns_in_one_line_and_keeps_what_there_is(tmp_path):
    spec, _ = write_fashion(tmp_path / "fashion-mnist", n_train=40, n_test=20)
    arrays = read_fashion_mnist(locate(tmp_path, False, spec), spec)
    have = int(np.bincount(arrays.train_y).min())
    with pytest.warns(UserWarning, match=rf"^train_per_class: 7000 exceeds the {have} images") as got:
        sub = stratified_subset(arrays, 7000, 0)
    assert len(got) == 1 and "\n" not in str(got[0].message)
    assert len(sub.train_y) == len(arrays.train_y) and len(sub.test_y) == len(arrays.test_y)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within the classes: silent
        assert len(stratified_subset(arrays, have, 0).train_y) == have * 10
