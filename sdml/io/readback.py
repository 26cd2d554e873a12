"""Reading back what the kit wrote: one place that turns a damaged file into a one-line error.

Every file the kit reads again (a run's ``config.json``, ``metrics.jsonl``, ``checkpoint.pt``,
``predictions.pt``, superclass mappings, caches, stamps, data files) goes through these readers.
A file that cannot be parsed, or parses but holds the wrong thing (each reader checks what it
holds: fields, types, shapes, finite numbers in range), raises :class:`DamagedFile`, whose
message names the file, says what is wrong and what to do. Whatever a parser raises on damaged
bytes is reported by its type name and the first line of its text (:func:`damage_named`), never
rebuilt. The reader never half-reads a file and never unpickles anything but tensors
(``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import warnings
from contextlib import contextmanager
from pathlib import Path


class DamagedFile(ValueError):
    """A file the kit wrote cannot be read back: truncated, malformed or not what it should be."""

    def __init__(self, path: str | Path, what: str, fix: str):
        self.path = str(path)
        # one line, whatever ``what`` quotes (a tensor's repr spans lines), and a short one
        what = " ".join(str(what).split())
        what = what if len(what) <= 300 else what[:297] + "..."
        super().__init__(f"{self.path}: {what}; {fix}")


def describe(err: BaseException) -> str:
    """``TypeName: first line of its text`` (at most 200 characters).

    Built from the exception's type name and text only: an exception is never rebuilt (some
    types, such as ``UnicodeDecodeError``, take other arguments than one message).
    """
    try:
        lines = str(err).strip().splitlines()
    except Exception:  # a broken __str__ must not hide the damage being reported
        lines = []
    first = " ".join(lines[0].split())[:200] if lines else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__



#: Errors of the file system, not of the file's bytes: they pass through a reader for the command
#: line to report as what they are (torch's zip reader raises EINVAL on damaged bytes: damage).
FILE_SYSTEM_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EIO, errno.ENOSPC, errno.EROFS,
                                errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EMFILE,
                                errno.ENFILE, errno.EDQUOT, errno.EBUSY, errno.ELOOP,
                                errno.ENAMETOOLONG, errno.ENXIO, errno.ETXTBSY})


@contextmanager
def damage_named(path: str | Path, fix: str, what: str = "is damaged or not what it should be"):
    """Any failure of the reading inside the block becomes :class:`DamagedFile` naming ``path``.

    A file system error (:data:`FILE_SYSTEM_ERRNOS`: permissions, I/O, a missing file) is not
    damage and passes through for the caller to report; so does ``DamagedFile`` itself.
    """
    try:
        yield
    except (DamagedFile, KeyboardInterrupt):
        raise
    except OSError as err:
        if err.errno in FILE_SYSTEM_ERRNOS:
            raise
        raise DamagedFile(path, f"{what} ({describe(err)})", fix) from None
    except Exception as err:  # parsers raise anything on hostile bytes: every one is damage here
        raise DamagedFile(path, f"{what} ({describe(err)})", fix) from None


def check(ok: bool, path: str | Path, what: str, fix: str) -> None:
    """Raise :class:`DamagedFile` (``path``, ``what``, ``fix``) unless ``ok``."""
    if not ok:
        raise DamagedFile(path, what, fix)


def is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x) -> bool:
    """A finite int or float (not a bool)."""
    return (isinstance(x, (int, float)) and not isinstance(x, bool)
            and (isinstance(x, int) or math.isfinite(x)))


def expect_tensor(t, name: str, shape: tuple, floating: bool, finite: bool = False) -> None:
    """Raise ``ValueError`` unless ``t`` is a tensor of ``shape`` (``None``: any size) whose
    dtype is floating (or integer, ``floating=False``), with finite values when ``finite``."""
    import torch

    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name!r} is a {type(t).__name__}, not a tensor")
    if t.dim() != len(shape) or any(s is not None and s != n for s, n in zip(shape, t.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name!r} has shape {tuple(t.shape)}, not {want}")
    integer = not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool
    if not (t.is_floating_point() if floating else integer):
        raise ValueError(f"{name!r} is {t.dtype}, not {'floating' if floating else 'integer'}")
    if finite and floating and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name!r} holds values that are not finite")


def read_text(path: str | Path, fix: str) -> str:
    """The file's text; ``FileNotFoundError`` naming it when missing, DamagedFile when it is not
    UTF-8 text."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; {fix}")
    if not path.is_file():
        raise DamagedFile(path, "is not a file", fix)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise DamagedFile(path, f"is not UTF-8 text ({describe(err)})", fix) from None


def read_json(path: str | Path, fix: str, kind: type = dict):
    """A JSON document whose top level is ``kind`` (an object by default)."""
    text = read_text(path, fix)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        what = "is empty" if not text.strip() else f"is not valid JSON ({err.msg} at line {err.lineno})"
        raise DamagedFile(path, what, fix) from None
    except (ValueError, RecursionError) as err:  # a number too long to convert, nesting too deep
        raise DamagedFile(path, f"is not valid JSON ({describe(err)})", fix) from None
    if not isinstance(obj, kind):
        raise DamagedFile(path, f"holds a JSON {type(obj).__name__}, not a JSON "
                                f"{'object' if kind is dict else kind.__name__}", fix)
    return obj


def read_jsonl(path: str | Path, fix: str, required: tuple[str, ...] = ()) -> tuple[list[dict], bool]:
    """The rows of a JSON-lines log and whether its last line was cut (a kill during an append).

    A last line without its newline that does not parse is what an interrupted append leaves;
    it is reported (``True``), not raised, so that the caller can repair it. Any other line that
    is not a JSON object holding ``required`` raises :class:`DamagedFile` naming its number.
    """
    text = read_text(path, fix)
    lines = text.split("\n")
    cut = False
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:  # no newline after the last line: it may be an append cut short
        try:
            json.loads(lines[-1])
        except (ValueError, RecursionError):
            lines.pop()
            cut = True
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DamagedFile(path, f"line {n} is not valid JSON ({err.msg})", fix) from None
        except (ValueError, RecursionError) as err:
            raise DamagedFile(path, f"line {n} is not valid JSON ({describe(err)})", fix) from None
        if not isinstance(row, dict):
            raise DamagedFile(path, f"line {n} is a JSON {type(row).__name__}, not an object", fix)
        missing = [k for k in required if k not in row]
        if missing:
            raise DamagedFile(path, f"line {n} has no {missing[0]!r}", fix)
        rows.append(row)
    return rows, cut


def read_torch(path: str | Path, fix: str, required: tuple[str, ...] = (), map_location="cpu",
               mmap: bool = False) -> dict:
    """A dict saved with ``torch.save``, loaded with ``weights_only=True`` (tensors and plain
    containers only: a pickled object or code inside is refused, never run)."""
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; {fix}")
    # torch raises RuntimeError, EOFError, UnpicklingError, UnicodeDecodeError, IndexError,
    # KeyError, ... on a cut or damaged file: each one is reported by its type and first line
    with damage_named(path, fix, "is truncated, damaged or not a torch file of tensors (pickled "
                                 "data other than tensors is refused, never run)"):
        with warnings.catch_warnings():  # a foreign pickle's protocol warning is not the news
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    if not isinstance(obj, dict):
        raise DamagedFile(path, f"holds a {type(obj).__name__}, not a dict of tensors", fix)
    missing = [k for k in required if k not in obj]
    if missing:
        raise DamagedFile(path, f"has no {missing[0]!r} entry (it is not a file the kit wrote)", fix)
    return obj


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def json_sha256(obj) -> str:
    """A content hash of a JSON-able object: key order and whitespace do not matter."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
