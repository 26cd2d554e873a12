"""One process per folder: an exclusive ``fcntl.flock`` held for a run's whole life.

The lock file ``.sdml.lock`` names its holder (pid, host, start time); a second process is
refused with :class:`FolderBusy` naming it. The kernel drops the lock when the holder exits,
however it dies (a SIGKILL included), so a lock is never stale. flock from the standard library
does the job; a hand-written part is the inode check after locking, which keeps two processes
from each locking a different file when a releasing holder removes it at the same moment.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

LOCK = ".sdml.lock"


class FolderBusy(RuntimeError):
    """Another process holds the folder's lock."""


class FolderLock:
    """Hold ``folder/.sdml.lock`` exclusively until :meth:`release` (or the end of a ``with``)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.fd: int | None = None

    def acquire(self) -> "FolderLock":
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
                os.close(fd)
                raise FolderBusy(f"{self.folder}: in use by {holder}; wait for it to finish or stop "
                                 f"it, or choose another folder") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file as we locked it: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)  # closing drops the lock
            self.fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
