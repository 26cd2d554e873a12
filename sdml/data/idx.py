"""The idx format of MNIST-style datasets, read with checks and no pickle.

An idx file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order. Only unsigned bytes (type code
0x08) occur in the datasets here. :func:`read_idx` takes the file as it lies (``.gz`` or not),
checks the md5 of the *decompressed* bytes before reading anything from them (so a recompressed
copy, such as Debian's, passes when its content is the original), then checks the header: magic,
number of dimensions, and that the dimensions account for exactly the bytes that follow.
"""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from sdml.data.files import DATA_FIX, bytes_md5, md5_error
from sdml.io.readback import FILE_SYSTEM_ERRNOS, DamagedFile, describe

UBYTE = 0x08


def idx_bytes(path: str | Path) -> bytes:
    """The idx bytes of a file, decompressed when its name ends in ``.gz``."""
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error, ValueError, MemoryError) as err:
        if isinstance(err, OSError) and err.errno in FILE_SYSTEM_ERRNOS:
            raise  # a file system error, not damage
        raise DamagedFile(path, f"not a complete gzip file ({describe(err)})", DATA_FIX) from None


def parse_idx(data: bytes, where: str, ndim: int) -> np.ndarray:
    """The uint8 array an idx file's bytes hold, after checking the header against ``ndim``."""
    if len(data) < 4 + 4 * ndim:
        raise DamagedFile(where, f"{len(data)} bytes, too short for an idx header of "
                                 f"{ndim} dimension(s)", DATA_FIX)
    if data[0] != 0 or data[1] != 0 or data[2] != UBYTE or data[3] != ndim:
        raise DamagedFile(where, f"magic number {data[:4].hex()} is not that of an idx file of "
                                 f"unsigned bytes with {ndim} dimension(s) (expected 000008{ndim:02x})",
                          DATA_FIX)
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = len(data) - 4 - 4 * ndim
    if math.prod(dims) != body:  # Python ints: four 32-bit dimensions cannot overflow
        raise DamagedFile(where, f"the header gives dimensions {dims} ({math.prod(dims)} "
                                 f"values) but {body} bytes follow it; the file is truncated or "
                                 f"malformed", DATA_FIX)
    # a writable copy: torch refuses to share memory with a read-only buffer
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def read_idx(path: str | Path, md5: str, ndim: int) -> np.ndarray:
    """Read an idx file (``.gz`` or not) whose decompressed bytes must have md5 ``md5``."""
    data = idx_bytes(path)
    actual = bytes_md5(data)
    if actual != md5:
        raise md5_error(f"{path} (decompressed)" if Path(path).suffix == ".gz" else path,
                        actual, md5)
    return parse_idx(data, str(path), ndim)
