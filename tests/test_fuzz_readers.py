"""Every file the kit reads back, fuzzed: a damaged file ends in the kit's one damaged-file error.

For each reader a valid file is made first (a real 1-epoch run for the run files), then
Hypothesis damages it:

- random bytes;
- a truncation at any length;
- bit flips, and a byte range overwritten;
- a valid container with the wrong contents: JSON with a key missing or added, a value of
  another type, NaN, infinities and huge numbers; a torch file whose dict misses a key or holds
  a tensor of another shape or dtype; a gzip or tar wrapper around garbage; a pickle that would
  run code if anything unpickled it outside the checked path.

Properties, for every example: the reader returns (the damage left the file meaning the same)
or raises :class:`~sdml.io.readback.DamagedFile` naming the file in one line; nothing else
escapes; the folder's files are byte-identical afterwards; ``torch.load`` is only called with
``weights_only=True``, ``pickle.load``/``pickle.loads`` are never called, and no pickled payload
runs. A superclass mapping is a user's input as well as a file: its content errors are the
``ValueError`` of a bad input (exit 2), which names the file too.

The number of examples per reader is the Hypothesis profile's (``tests/conftest.py``): small and
derandomized in CI; ``SDML_FUZZ_EXAMPLES`` raises it.
"""
import copy
import gzip
import hashlib
import io
import json
import os
import pickle
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sdml.cli import main
from sdml.data.cifar import _RestrictedUnpickler, read_archive
from sdml.data.files import file_md5
from sdml.data.idx import idx_bytes, parse_idx
from sdml.data.synthetic import write_synthetic_archive
from sdml.hierarchy.superclasses import cifar_superclasses, load_mapping
from sdml.hierarchy.wordnet import load_tree, tree_path
from sdml.io.readback import DamagedFile, read_torch
from sdml.notebooks.stamps import read_stamp
from sdml.results.analysis import check_attention
from sdml.results.cache import read_cached
from sdml.results.features import check_features
from sdml.training import runs
from tiny_run import checksums, python, subprocess_env, train_argv

MARKER = "PAYLOAD_RAN"


def _payload_ran(folder):
    """What a pickled payload would call if anything unpickled it: leaves a file behind."""
    Path(folder, MARKER).write_text("ran\n")


class Payload:
    def __init__(self, folder):
        self.folder = str(folder)

    def __reduce__(self):
        return _payload_ran, (self.folder,)


# ----------------------------------------------------------------------------- valid files

KEY = {"checkpoint": "0" * 64, "n_test": 6, "layer": "penultimate"}
ATT_KEY = {"checkpoint": "0" * 64, "n_pairs": 3}
SHA = "ab" * 32


def _idx(array: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return head + array.tobytes()


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_data):
    """A folder per reader holding one valid file, and the reader: ``{name: (folder, file,
    read)}``; ``read(path)`` reads the file as the kit does."""
    root = tmp_path_factory.mktemp("fuzz")
    run = root / "run"
    assert main(train_argv(run, tiny_data, 1)) == 0
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    out = {}

    def add(name, file, data, read):
        folder = root / name
        folder.mkdir()
        (folder / file).write_bytes(data)
        out[name] = (folder, file, read)

    for file in (runs.CHECKPOINT, runs.PREDICTIONS, runs.CONFIG, runs.METRICS):
        reader = {runs.CHECKPOINT: lambda p: runs.read_checkpoint(p),
                  runs.PREDICTIONS: lambda p: runs.read_predictions(p.parent),
                  runs.CONFIG: lambda p: runs.read_config(p.parent),
                  runs.METRICS: lambda p: runs.read_metrics(p.parent)}[file]
        add(file, file, (run / file).read_bytes(), reader)
    features = {"features": torch.randn(2, 6, 4, generator=gen), "y": torch.arange(6),
                "coarse": torch.arange(6) % 2}
    buf = io.BytesIO()
    torch.save({"key": KEY, "value": features}, buf)
    add("features.pt", "features.pt", buf.getvalue(),
        lambda p: read_cached(p, KEY, lambda v: check_features(v, 2, 6)))
    attention = {"shares": torch.rand(2, 2, 6, 2, 3, generator=gen),
                 "same": torch.tensor([True, False, True])}
    buf = io.BytesIO()
    torch.save({"key": ATT_KEY, "value": attention}, buf)
    add("attention.pt", "attention.pt", buf.getvalue(),
        lambda p: read_cached(p, ATT_KEY, lambda v: check_attention(v, 2, 2, 6)))
    add("mapping", "map.json", json.dumps(cifar_superclasses().to_json()).encode(), load_mapping)
    stamp = {"inputs": {"notebook": SHA, "params": {"epochs": 2, "run_root": "runs"},
                        "library": SHA, "reads": {"runs/a/config.json": SHA}},
             "outputs": {"out.ipynb": SHA}, "at": 1700000000.5}
    add("stamp", "05_results.stamp.json", json.dumps(stamp).encode(), read_stamp)
    add("tree", "wordnet_tree.json", tree_path("cifar10").read_bytes(),
        lambda p: load_tree(p, "cifar10"))
    images = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    add("idx", "x-images-idx3-ubyte", _idx(images), lambda p: parse_idx(idx_bytes(p), str(p), 3))
    add("idx.gz", "x-images-idx3-ubyte.gz", gzip.compress(_idx(images), mtime=0),
        lambda p: parse_idx(idx_bytes(p), str(p), 3))
    archive = root / "archive.tar.gz"
    write_synthetic_archive(archive, 1, 1, seed=0, size=8)
    # the md5 of the damaged file itself: the parser, not only the checksum, meets the damage
    add("cifar", "cifar-100-python.tar.gz", archive.read_bytes(),
        lambda p: read_archive(p, file_md5(p)))
    return out


# ----------------------------------------------------------------------------- strategies

def json_values():
    leaves = (st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True)
              | st.integers(min_value=-(10 ** 40), max_value=10 ** 40) | st.text(max_size=8))
    return st.recursive(leaves, lambda c: st.lists(c, max_size=3)
                        | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=6)


def tensors():
    dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64,
                              torch.uint8, torch.bool])
    shapes = st.lists(st.integers(0, 4), max_size=4).map(tuple)

    def build(dtype, shape, value):
        if dtype == torch.bool:
            return torch.full(shape, bool(value == value), dtype=dtype)
        if not dtype.is_floating_point:
            value = 0 if value != value or abs(value) == float("inf") else int(max(-1, min(value, 255)))
        elif abs(value) < float("inf"):
            value = max(-1e4, min(value, 1e4))  # within float16's range
        return torch.full(shape, value, dtype=dtype)

    return st.builds(build, dtypes, shapes, st.floats(allow_nan=True, allow_infinity=True))


def torch_values():
    return json_values() | tensors()


def numpy_values():
    arrays = st.builds(lambda dt, shape, v: np.full(shape, v).astype(dt),
                       st.sampled_from(["uint8", "int64", "float32", "float64"]),
                       st.lists(st.integers(0, 4), max_size=3).map(tuple), st.integers(-1, 300))
    return json_values() | arrays


@st.composite
def mutated(draw, obj, values):
    """``obj`` with one container inside it changed: a key or item removed, one replaced by a
    drawn value, or an extra key added."""
    obj = copy.deepcopy(obj)
    containers = []

    def walk(x):
        if isinstance(x, (dict, list)) and len(containers) < 200:
            containers.append(x)
            for v in (x.values() if isinstance(x, dict) else x):
                walk(v)

    walk(obj)
    if not containers:
        return draw(values)
    box = draw(st.sampled_from(containers))
    keys = list(box) if isinstance(box, dict) else list(range(len(box)))
    op = draw(st.sampled_from(["delete", "replace", "add"] if keys else ["add"]))
    if op == "add":
        if isinstance(box, dict):
            box[draw(st.text(max_size=6))] = draw(values)
        else:
            box.append(draw(values))
    else:
        key = draw(st.sampled_from(keys))
        if op == "delete":
            del box[key]
        else:
            box[key] = draw(values)
    return obj


@st.composite
def byte_damage(draw, valid: bytes):
    """Random bytes, a truncation, bit flips, or a byte range overwritten."""
    kind = draw(st.sampled_from(["random", "truncate", "flip", "overwrite"]))
    if kind == "random" or not valid:
        return draw(st.binary(max_size=4096))
    if kind == "truncate":
        return valid[:draw(st.integers(0, len(valid) - 1))]
    data = bytearray(valid)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    start = draw(st.integers(0, len(data) - 1))
    data[start:start + 64] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@st.composite
def structured(draw, name: str, valid: bytes, folder: Path):
    """A valid container of this reader's kind with the wrong contents."""
    if name.endswith(".pt"):
        obj = torch.load(io.BytesIO(valid), weights_only=True)
        if draw(st.integers(0, 9)) == 0:  # code that must never run
            return pickle.dumps({**obj, "epoch": Payload(folder)})
        return _torch_bytes(draw(mutated(obj, torch_values())))
    if name == runs.METRICS:
        lines = valid.decode().splitlines()
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = json.dumps(draw(mutated(json.loads(lines[i]), json_values())))
        return ("\n".join(lines) + "\n").encode()
    if name in (runs.CONFIG, "mapping", "stamp", "tree"):
        text = json.dumps(draw(mutated(json.loads(valid), json_values())))
        if draw(st.booleans()):  # numbers that overflow a float, written as text
            text = text.replace("1", draw(st.sampled_from(["1e999", "-1e999", "1" * 5000])), 1)
        return text.encode()
    if name in ("idx", "idx.gz"):
        raw = gzip.decompress(valid) if name == "idx.gz" else valid
        inner = draw(byte_damage(raw) | st.binary(max_size=256))
        return gzip.compress(inner, mtime=0) if name == "idx.gz" else inner
    return draw(tar_damage(valid, folder))


@st.composite
def tar_damage(draw, valid: bytes, folder: Path):
    """A CIFAR archive rebuilt with a member changed, missing, unsafe or extra; or gzip around
    garbage."""
    if draw(st.integers(0, 5)) == 0:
        return gzip.compress(draw(st.binary(max_size=512)), mtime=0)
    with tarfile.open(fileobj=io.BytesIO(valid), mode="r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    names = sorted(members)
    name = draw(st.sampled_from(names))
    op = draw(st.sampled_from(["garbage", "pickle", "payload", "drop", "unsafe", "twice"]))
    if op == "garbage":
        members[name] = draw(byte_damage(members[name]))
    elif op == "pickle":
        obj = _RestrictedUnpickler(members[name], name).load()
        members[name] = pickle.dumps(draw(mutated(obj, numpy_values())), protocol=2)
    elif op == "payload":
        members[name] = pickle.dumps({"data": Payload(folder)}, protocol=2)
    elif op == "drop":
        del members[name]
    elif op == "unsafe":
        members["../" + name] = members[name]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.USTAR_FORMAT) as tar:
        order = names + (["../" + name] if op == "unsafe" else []) + ([name] if op == "twice" else [])
        for n in order:
            if n in members:
                info = tarfile.TarInfo(n)
                info.size = len(members[n])
                tar.addfile(info, io.BytesIO(members[n]))
    return buf.getvalue()


def damaged(name: str, valid: bytes, folder: Path):
    return byte_damage(valid) | structured(name, valid, folder)


# ----------------------------------------------------------------------------- properties

@pytest.fixture
def guarded(monkeypatch):
    """``torch.load`` only with ``weights_only=True``; ``pickle.load(s)`` never."""
    real = torch.load

    def load(*args, **kwargs):
        assert kwargs.get("weights_only") is True, "torch.load without weights_only=True"
        return real(*args, **kwargs)

    def refused(*args, **kwargs):
        raise AssertionError("pickle.load(s) called by a reader")

    monkeypatch.setattr(torch, "load", load)
    monkeypatch.setattr(pickle, "load", refused)
    monkeypatch.setattr(pickle, "loads", refused)


READERS = ["checkpoint.pt", "predictions.pt", "features.pt", "attention.pt", "config.json",
           "metrics.jsonl", "mapping", "stamp", "tree", "idx", "idx.gz", "cifar"]


def check_one(name, folder, file, read, data):
    path = folder / file
    path.write_bytes(data)
    before = checksums(folder)
    try:
        read(path)
    except DamagedFile as err:
        # the file, or a member of an archive (``<archive>:<member>``)
        assert err.path == str(path) or err.path.startswith(f"{path}:"), (err.path, str(path))
        assert "\n" not in str(err) and str(err).startswith(f"{err.path}: "), str(err)
    except ValueError as err:
        # a mapping's content is a user's input: a bad-input error naming the file
        assert name == "mapping" and str(err).startswith(f"{path}: ") and "\n" not in str(err), \
            f"{type(err).__name__}: {err}"
    assert checksums(folder) == before, "the reader changed the folder"
    assert not (folder / MARKER).exists(), "a pickled payload ran"


@pytest.mark.parametrize("name", READERS)
def test_a_damaged_file_is_one_damaged_file_error(world, guarded, name):
    folder, file, read = world[name]
    valid = (folder / file).read_bytes()
    read(folder / file)  # the valid file reads

    examples = []

    @given(st.data())
    def fuzz(data):
        check_one(name, folder, file, read, data.draw(damaged(name, valid, folder)))
        examples.append(1)

    try:
        fuzz()
        outcome = "passed"
    except KeyboardInterrupt:
        outcome = "stopped"
        raise
    except BaseException:
        outcome = "failed"
        raise
    finally:
        (folder / file).write_bytes(valid)
        if os.environ.get("SDML_FUZZ_LOG"):  # examples this reader survived, for docs/fuzzing.md
            with open(os.environ["SDML_FUZZ_LOG"], "a") as log:
                log.write(f"{name}\t{len(examples)}\t{outcome}\n")


def test_the_profile_is_derandomized():
    from hypothesis import settings

    assert settings().derandomize and settings().database is None


# ----------------------------------------------------------------------------- the command line

def _damage_checkpoint(run):
    # seeded bytes on which torch.load raises UnicodeDecodeError (see test_bad_inputs.py)
    import random

    (run / "checkpoint.pt").write_bytes(random.Random(195).randbytes(4096))


def _damage_config(run):
    record = json.loads((run / "config.json").read_text())
    record["config"]["lr"] = float("nan")
    (run / "config.json").write_text(json.dumps(record))


def _damage_metrics(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[0] = lines[0].replace('"lr": ', '"lr": 1e999, "x": ', 1)
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("damage, file", [(_damage_checkpoint, "checkpoint.pt"),
                                          (_damage_config, "config.json"),
                                          (_damage_metrics, "metrics.jsonl")])
def test_the_command_line_reports_a_damaged_file_in_one_line(world, tiny_data, tmp_path, damage, file):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(world["config.json"][0].parent / "run", run)
    damage(run)
    before = checksums(run)
    proc = subprocess.run([python(), "-m", "sdml", *train_argv(run, tiny_data, 2, "--resume")],
                          capture_output=True, text=True, env=subprocess_env(), timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr and "unexpected" not in proc.stderr
    assert str(run / file) in lines[0], lines[0]
    assert checksums(run) == before
    assert hashlib.sha256((run / file).read_bytes()).hexdigest() == before[file]


# ----------------------------------------------------------------------------- the pieces

def test_a_damage_message_is_built_from_the_type_name_and_first_line_only():
    from sdml.io.readback import describe

    # UnicodeDecodeError takes five arguments: rebuilding it from one message would fail
    err = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    assert describe(err) == ("UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in "
                             "position 0: invalid start byte")
    assert describe(KeyError("a\nb")) == "KeyError: 'a\\nb'"
    assert describe(RuntimeError("first line\nsecond")) == "RuntimeError: first line"
    assert describe(EOFError()) == "EOFError"


def test_a_stamp_the_runner_records_reads_back_and_a_damaged_one_means_run_again(tmp_path):
    import time

    from sdml.notebooks import stamps

    notebook = tmp_path / "nb.ipynb"
    notebook.write_text("{}")
    output = tmp_path / "out" / "05_results.ipynb"
    output.parent.mkdir()
    output.write_text("executed")
    params = {"data_dir": str(tmp_path / "d"), "run_root": str(tmp_path / "runs"),
              "figures_dir": str(tmp_path / "f"), "epochs": 2}
    stamps.record(notebook, "05_results", params, output, time.time())
    path = stamps.stamp_path(output)
    assert set(read_stamp(path)) == {"inputs", "outputs", "at"}
    assert stamps.unchanged(notebook, "05_results", params, output)
    record = json.loads(path.read_text())
    record["outputs"] = {str(output): "not a digest"}
    path.write_text(json.dumps(record))
    with pytest.raises(DamagedFile, match="outputs"):
        read_stamp(path)
    assert not stamps.unchanged(notebook, "05_results", params, output)


@pytest.mark.parametrize("text", ['{"config": ' + "1" * 5000 + "}",  # too many digits for an int
                                  "[" * 100_000 + "]" * 100_000])    # nesting too deep to decode
def test_json_that_python_cannot_decode_is_a_damaged_file(tmp_path, text):
    (tmp_path / runs.CONFIG).write_text(text)
    with pytest.raises(DamagedFile) as err:
        runs.read_record(tmp_path)
    assert err.value.path == str(tmp_path / runs.CONFIG)


def test_every_cut_of_a_torch_file_is_a_damaged_file(tmp_path):
    # torch's zip reader raises OSError(EINVAL) on some cuts: damage, not a file system error
    buf = io.BytesIO()
    torch.save({"epoch": 1, "x": torch.zeros(1000)}, buf)
    data, path = buf.getvalue(), tmp_path / "cut.pt"
    einval = 0
    for n in range(0, len(data), 97):
        path.write_bytes(data[:n])
        with pytest.raises(DamagedFile) as err:
            read_torch(path, "fix")
        einval += "OSError" in str(err.value)
    assert einval > 0  # the case this test is about occurred


def test_a_pickle_that_names_a_far_memo_slot_is_refused_before_unpickling():
    # found by the extended fuzz run: LONG_BINPUT 2**31 - 16 in a damaged CIFAR member made the
    # C unpickler allocate and clear ~16 GB; the check reads opcodes only, it runs nothing
    from sdml.data.cifar import _check_memo

    with pytest.raises(DamagedFile, match="memo slot 2147483632 after 2 opcodes"):
        _check_memo(b"\x80\x02}r\xf0\xff\xff\x7f.", "member")
    for protocol in (2, 4):
        _check_memo(pickle.dumps({"data": np.zeros((2, 3), np.uint8), "labels": [1, 2]}, protocol), "m")


def test_a_damage_message_is_one_short_line_whatever_it_quotes(tmp_path):
    # found by the extended fuzz run: a checkpoint whose epoch is a (2, 1) tensor was reported
    # with the tensor's repr, which spans two lines
    err = DamagedFile(tmp_path / "f", f"its epoch {torch.zeros(2, 1)!r} is not a count", "fix it")
    assert "\n" not in str(err) and str(err).endswith("is not a count; fix it")
    assert len(str(DamagedFile("f", "x" * 10_000, "fix"))) < 320
