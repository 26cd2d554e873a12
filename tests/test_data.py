"""Tests for sdml.data.cifar (archive reading), sdml.data.batches (device batches) and sdml.data.synthetic, on tiny
archives."""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from sdml.data import cifar as data
from sdml.data import synthetic
from sdml.data.batches import crop_flip, denormalize, eval_batches, normalize, to_device
from sdml.data.cifar import ARCHIVE_NAME, CIFAR100_MD5, CifarArrays, ensure_cifar100, read_archive
from sdml.data.load import load_dataset
from sdml.hierarchy.superclasses import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE, superclass_of
from sdml.training.step import plan_epoch

F2C = np.asarray(FINE_TO_COARSE)


# ----------------------------------------------------------------------------- archive builders

def _py2_pickle(obj) -> bytes:
    """A protocol-2 pickle laid out as Python 2's cPickle wrote CIFAR-100: byte strings for str,
    numpy arrays through ``numpy.core.multiarray._reconstruct`` (written here opcode by opcode)."""
    out = bytearray(b"\x80\x02")
    put = out.extend

    def text(b: bytes):
        put(b"T" + struct.pack("<I", len(b)) + b)  # BINSTRING

    def integer(i: int):
        put(b"J" + struct.pack("<i", i))  # BININT

    def emit(o):
        if isinstance(o, dict):
            put(b"}(")
            for k, v in o.items():
                emit(k)
                emit(v)
            put(b"u")
        elif isinstance(o, list):
            put(b"](")
            for v in o:
                emit(v)
            put(b"e")
        elif isinstance(o, str):
            text(o.encode("latin1"))
        elif isinstance(o, int):
            integer(o)
        elif isinstance(o, np.ndarray):
            put(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            integer(0)
            put(b"\x85")
            text(b"b")
            put(b"\x87R(")  # TUPLE3, REDUCE, MARK: the state tuple follows
            integer(1)
            for n in o.shape:
                integer(n)
            put(b"\x86cnumpy\ndtype\n")
            text(b"u1")
            put(b"\x89\x88\x87R(")
            integer(3)
            text(b"|")
            put(b"NNN")
            for n in (-1, -1, 0):
                integer(n)
            put(b"tb\x89")
            text(o.tobytes())
            put(b"tb")
        else:
            raise TypeError(type(o))

    emit(obj)
    put(b".")
    return bytes(out)


def _tar_gz(path, members: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return hashlib.md5(path.read_bytes()).hexdigest()


def _split(rng, n, side=32):
    fine = rng.integers(0, 100, n)
    return {"batch_label": "b", "fine_labels": fine.tolist(), "coarse_labels": F2C[fine].tolist(),
            "data": rng.integers(0, 256, (n, 3 * side * side), dtype=np.uint8)}


META = {"fine_label_names": list(FINE_NAMES), "coarse_label_names": list(COARSE_NAMES)}


def _archive(tmp_path, train, test, meta=META, dump=_py2_pickle, extra=None):
    members = {"cifar-100-python/file.txt~": b"notes",
               "cifar-100-python/meta": dump(meta), "cifar-100-python/test": dump(test),
               "cifar-100-python/train": dump(train), **(extra or {})}
    path = tmp_path / ARCHIVE_NAME
    return path, _tar_gz(path, members)


def _check_round_trip(arrays: CifarArrays, train, test):
    for (x, y, c), split in (((arrays.train_x, arrays.train_y, arrays.train_coarse), train),
                             ((arrays.test_x, arrays.test_y, arrays.test_coarse), test)):
        n = len(split["fine_labels"])
        assert x.dtype == np.uint8 and x.shape == (n, 3, 32, 32)
        # channel-major rows: the first 1024 values are the red plane, row by row
        np.testing.assert_array_equal(x.reshape(n, -1), split["data"])
        np.testing.assert_array_equal(x[:, 1, 0, 5], split["data"][:, 1024 + 5])
        assert y.dtype == np.int64 and y.tolist() == split["fine_labels"]
        assert c.dtype == np.int64 and c.tolist() == split["coarse_labels"]
    assert arrays.fine_names == FINE_NAMES and arrays.coarse_names == COARSE_NAMES


# ----------------------------------------------------------------------------- reading

def test_python2_format_archive_reads_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    train, test = _split(rng, 7), _split(rng, 3)
    path, md5 = _archive(tmp_path, train, test)
    _check_round_trip(read_archive(path, md5), train, test)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python3_pickles_with_bytes_keys_read_back(tmp_path, protocol):
    rng = np.random.default_rng(protocol)
    train, test = _split(rng, 5), _split(rng, 2)

    def dump(d):
        return pickle.dumps({k.encode(): v for k, v in d.items()}, protocol=protocol)

    path, md5 = _archive(tmp_path, train, test, dump=dump)
    _check_round_trip(read_archive(path, md5), train, test)


def test_wrong_md5_is_refused_before_unpickling(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    path, md5 = _archive(tmp_path, _split(rng, 2), _split(rng, 2))

    def must_not_run(*args, **kwargs):
        raise AssertionError("unpickled an archive whose md5 did not match")

    monkeypatch.setattr(data, "_unpickle", must_not_run)
    wrong = "0" * 32
    with pytest.raises(ValueError) as err:
        read_archive(path, wrong)
    assert str(path) in str(err.value) and wrong in str(err.value) and md5 in str(err.value)


class _Evil:
    def __reduce__(self):
        return os.system, ("true",)


def test_forbidden_global_is_refused_even_with_matching_md5(tmp_path):
    rng = np.random.default_rng(2)
    train = {**_split(rng, 2), "data": _Evil()}
    path, md5 = _archive(tmp_path, train, _split(rng, 2), dump=lambda d: pickle.dumps(d, 2))
    with pytest.raises(ValueError, match=r"system.*not allowed"):
        read_archive(path, md5)


def test_unsafe_member_path_is_refused(tmp_path):
    rng = np.random.default_rng(3)
    path, md5 = _archive(tmp_path, _split(rng, 2), _split(rng, 2), extra={"../escape": b"x"})
    with pytest.raises(ValueError, match="unsafe path"):
        read_archive(path, md5)


def test_inconsistent_labels_and_names_are_refused(tmp_path):
    rng = np.random.default_rng(4)
    train = _split(rng, 4)
    train["coarse_labels"][2] = (train["coarse_labels"][2] + 1) % 20
    path, md5 = _archive(tmp_path, train, _split(rng, 2))
    with pytest.raises(ValueError, match="sample 2"):
        read_archive(path, md5)
    meta = {**META, "fine_label_names": META["fine_label_names"][::-1]}
    path, md5 = _archive(tmp_path, _split(rng, 2), _split(rng, 2), meta=meta)
    with pytest.raises(ValueError, match="fine_label_names"):
        read_archive(path, md5)


def test_missing_archive_without_download_names_file_and_synthetic(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        ensure_cifar100(tmp_path, download=False)
    assert str(tmp_path / ARCHIVE_NAME) in str(err.value) and "synthetic" in str(err.value)
    with pytest.raises(FileNotFoundError, match="synthetic"):
        load_dataset("cifar100", tmp_path, download=False)


def _fake_download_module(monkeypatch, download_url):
    """Stand in for torchvision.datasets.utils (no network, and no torchvision import)."""
    fake = types.ModuleType("torchvision.datasets.utils")
    fake.download_url = download_url
    monkeypatch.setitem(sys.modules, "torchvision.datasets.utils", fake)


def test_present_archive_is_checked_without_network(tmp_path, monkeypatch):
    _fake_download_module(monkeypatch, lambda *a, **k: pytest.fail("used the network"))
    (tmp_path / ARCHIVE_NAME).write_bytes(b"not the archive")
    with pytest.raises(ValueError, match=CIFAR100_MD5):
        ensure_cifar100(tmp_path, download=True)
    with pytest.raises(ValueError, match=CIFAR100_MD5):
        load_dataset("cifar100", tmp_path, download=True)


def _offline(url, folder, filename):
    raise OSError("offline")


def _wrong_file(url, folder, filename):
    (Path(folder) / filename).write_bytes(b"an error page")


@pytest.mark.parametrize("download_url, error", [(_offline, FileNotFoundError),
                                                 (_wrong_file, ValueError)])
def test_failed_download_leaves_nothing_behind(tmp_path, monkeypatch, download_url, error):
    _fake_download_module(monkeypatch, download_url)
    with pytest.raises(error) as err:
        ensure_cifar100(tmp_path / "data", download=True)
    message = str(err.value)
    if error is FileNotFoundError:
        assert "offline" in message and "synthetic" in message
        assert str(tmp_path / "data" / ARCHIVE_NAME) in message
    else:
        assert CIFAR100_MD5 in message
    assert list((tmp_path / "data").iterdir()) == []


def test_unknown_dataset_name_names_the_field():
    with pytest.raises(ValueError, match=r"data = 'imagenet'.*cifar100, synthetic"):
        load_dataset("imagenet", "unused")


# ----------------------------------------------------------------------------- synthetic

@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / ARCHIVE_NAME
    md5 = synthetic.write_synthetic_archive(path, 4, 2, seed=0)
    return path, md5, read_archive(path, md5)


def test_synthetic_is_deterministic_and_seeded(synth, tmp_path):
    path, md5, _ = synth
    assert synthetic.write_synthetic_archive(tmp_path / "a.tar.gz", 4, 2, seed=0) == md5
    assert (tmp_path / "a.tar.gz").read_bytes() == path.read_bytes()
    assert synthetic.write_synthetic_archive(tmp_path / "b.tar.gz", 4, 2, seed=1) != md5


def test_synthetic_labels_balanced_and_consistent(synth):
    arrays = synth[2]
    assert arrays.train_x.shape == (400, 3, 32, 32) and arrays.test_x.shape == (200, 3, 32, 32)
    assert np.bincount(arrays.train_y, minlength=100).tolist() == [4] * 100
    assert np.bincount(arrays.test_y, minlength=100).tolist() == [2] * 100
    np.testing.assert_array_equal(arrays.train_coarse, F2C[arrays.train_y])
    np.testing.assert_array_equal(arrays.test_coarse, F2C[arrays.test_y])
    assert arrays.train_y[:100].tolist() != sorted(arrays.train_y[:100].tolist())  # shuffled


def test_synthetic_superclasses_look_alike(synth):
    arrays = synth[2]
    x = arrays.train_x.reshape(400, -1).astype(np.float64) / 255
    sq = (x**2).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * x @ x.T, 0))  # (400, 400)
    y, c = arrays.train_y, arrays.train_coarse
    same_class = (y[:, None] == y[None]) & ~np.eye(400, dtype=bool)
    sibling = (c[:, None] == c[None]) & (y[:, None] != y[None])
    other = c[:, None] != c[None]
    # closer within a superclass than across superclasses, and closest within a class
    assert dist[sibling].mean() < 0.85 * dist[other].mean()
    assert dist[same_class].mean() < dist[sibling].mean()


def test_ensure_synthetic_caches_with_manifest_and_refuses_tampering(tmp_path, monkeypatch):
    params = dict(n_train_per_class=2, n_test_per_class=1, seed=3, size=16)
    path, md5 = synthetic.ensure_synthetic(tmp_path, **params)
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["md5"] == md5 == hashlib.md5(path.read_bytes()).hexdigest()
    assert manifest["params"] == {"version": synthetic.VERSION, **params}
    arrays = load_dataset("synthetic", tmp_path, synthetic=params)
    assert arrays.train_x.shape == (200, 3, 16, 16)

    monkeypatch.setattr(synthetic, "write_synthetic_archive",
                        lambda *a, **k: pytest.fail("regenerated a cached archive"))
    assert synthetic.ensure_synthetic(tmp_path, **params) == (path, md5)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=f"expected {md5}"):
        load_dataset("synthetic", tmp_path, synthetic=params)
    with pytest.raises(ValueError, match=r"synthetic\.size = 4"):
        synthetic.ensure_synthetic(tmp_path, size=4)
    with pytest.raises(ValueError, match="unknown parameter.*'classes'"):
        load_dataset("synthetic", tmp_path, synthetic={"classes": 10})


# ----------------------------------------------------------------------------- device batches

def _device_data(n=20, side=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3, side, side), dtype=np.uint8)
    y = np.arange(n, dtype=np.int64)  # unique labels identify the samples
    arrays = CifarArrays(x, y, F2C[y], x[:7], y[:7], F2C[y[:7]], FINE_NAMES, COARSE_NAMES)
    return arrays, to_device(arrays, "cpu")


def test_to_device_statistics_and_normalisation():
    arrays, d = _device_data()
    x = arrays.train_x.astype(np.float64) / 255
    np.testing.assert_allclose(d.mean.flatten(), x.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(d.std.flatten(), x.std(axis=(0, 2, 3)), rtol=1e-6)
    assert d.mean.shape == d.std.shape == (1, 3, 1, 1) and d.mean.dtype == torch.float32
    z = normalize(d.train_x, d.mean, d.std)
    assert z.dtype == torch.float32
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(denormalize(z, d.mean, d.std), d.train_x.float() / 255)


def _windows(x: np.ndarray, pad: int) -> np.ndarray:
    """Every (dy, dx, flip) window of each padded image, by slicing: (B, 2p+1, 2p+1, 2, C, H, W)."""
    b, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.empty((b, 2 * pad + 1, 2 * pad + 1, 2, c, h, w), x.dtype)
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            win = padded[:, :, dy:dy + h, dx:dx + w]
            out[:, dy, dx, 0], out[:, dy, dx, 1] = win, win[..., ::-1]
    return out


def test_crop_flip_matches_per_sample_slicing():
    x = torch.randint(0, 256, (6, 3, 5, 7), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))
    dy, dx = torch.tensor([0, 8, 4, 2, 8, 0]), torch.tensor([8, 0, 4, 7, 8, 0])
    flip = torch.tensor([False, True, False, True, True, False])
    windows = _windows(x.numpy(), 4)
    expected = windows[np.arange(6), dy.numpy(), dx.numpy(), flip.numpy().astype(int)]
    np.testing.assert_array_equal(crop_flip(x, dy, dx, flip, pad=4).numpy(), expected)


def test_planned_crop_is_a_translated_window_and_flips_half():
    b = 512
    x = torch.randint(0, 256, (b, 3, 8, 8), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(1))
    plan = plan_epoch(torch.arange(b) % 100, b, 1, "none", superclass_of(),
                      torch.Generator().manual_seed(2), {})
    out = crop_flip(x, plan.dy[0], plan.dx[0], plan.flip[0]).numpy()
    windows = _windows(x.numpy(), 4).reshape(b, 9 * 9 * 2, 3, 8, 8)
    match = (windows == out[:, None]).all(axis=(2, 3, 4))  # (B, 162)
    assert (match.sum(1) == 1).all()  # each output is exactly one window of its own image
    dy, dx, flip = np.unravel_index(match.argmax(1), (9, 9, 2))
    assert 0.4 < flip.mean() < 0.6
    assert set(dy.tolist()) == set(dx.tolist()) == set(range(9))


def test_planned_epoch_shuffles_drops_the_rest_and_follows_its_seed():
    labels, sc = torch.arange(20), superclass_of()

    def plan(seed, batch_size=4, steps=5):
        return plan_epoch(labels, batch_size, steps, "none", sc,
                          torch.Generator().manual_seed(seed), {})

    seen = plan(0).index.flatten()
    assert sorted(seen.tolist()) == list(range(20)) and seen.tolist() != list(range(20))
    partial = plan(0, batch_size=6, steps=3).index.flatten()
    assert len(partial) == 18 and len(set(partial.tolist())) == 18  # last 2 dropped, no repeats
    a, b, c = plan(5), plan(5), plan(6)
    fields = ("index", "partner", "dy", "dx", "flip")
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in fields)
    assert not torch.equal(a.index, c.index) and not torch.equal(a.dy, c.dy)


def test_eval_batches_are_the_normalised_test_set_in_order():
    _, d = _device_data(n=20)
    batches = list(eval_batches(d, 3))
    assert [len(y) for _, y, _ in batches] == [3, 3, 1]
    x = torch.cat([b[0] for b in batches])
    torch.testing.assert_close(x, normalize(d.test_x, d.mean, d.std), rtol=0, atol=0)
    assert torch.equal(torch.cat([b[1] for b in batches]), d.test_y)
    assert torch.equal(torch.cat([b[2] for b in batches]), d.test_coarse)
    with pytest.raises(ValueError, match="batch_size = 0"):
        next(eval_batches(d, 0))
