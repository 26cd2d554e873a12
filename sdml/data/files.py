"""Checked files: md5 sums, and downloads that leave nothing behind when they fail."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from sdml.io.readback import DamagedFile

#: What to do about a damaged data file.
DATA_FIX = "delete it and fetch or generate it again"


def bytes_md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def file_md5(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def md5_error(where: str | Path, actual: str, expected: str) -> DamagedFile:
    return DamagedFile(where, f"md5 is {actual}, expected {expected}", "the file is corrupt or "
                       "not the one it claims to be, so it is refused (delete it and fetch or "
                       "generate it again)")


def check_md5(path: str | Path, expected: str) -> None:
    """Raise :class:`~sdml.io.readback.DamagedFile` (a ``ValueError``) naming the file and both
    checksums unless ``md5(path) == expected``."""
    actual = file_md5(path)
    if actual != expected:
        raise md5_error(path, actual, expected)


def download_checked(urls: list[str], target: Path, md5: str) -> Path:
    """Download the first of ``urls`` that works to ``target``, check its md5, move it in place.

    Uses torchvision's downloader; a failed or corrupt transfer leaves nothing at ``target``.
    Raises ``ValueError`` (the md5 message) when a file arrived but was not the one expected,
    else ``FileNotFoundError`` naming every url tried and why it failed.
    """
    from torchvision.datasets.utils import download_url

    target.parent.mkdir(parents=True, exist_ok=True)
    errors, corrupt = [], None
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
        got = Path(tmp) / target.name
        for url in urls:
            try:
                download_url(url, tmp, target.name)
            except Exception as err:  # every failure is reported below, with its url
                errors.append(f"{url}: {type(err).__name__}: {err}")
                continue
            actual = file_md5(got)
            if actual != md5:
                corrupt = md5_error(f"{target} (downloaded from {url})", actual, md5)
                got.unlink()
                continue
            os.replace(got, target)
            return target
    if corrupt is not None:
        raise corrupt
    raise FileNotFoundError(f"downloading it failed ({'; '.join(errors)})")
