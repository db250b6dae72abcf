"""One writer per journal file: an exclusive OS lock on ``<path>.lock``, held while the journal is open.

The kernel releases the lock when the process dies, SIGKILL included, so a crash never leaves a
stale lock behind (a pid file would).  The lock is per open file, so a second ``Journal`` on the same
path in the same process is refused too.  The holder's pid is written into the file for the error.
"""

from __future__ import annotations

import os
import sys

from gridbot.errors import GridbotError

__all__ = ["WriterLock"]


class WriterLock:
    """Held from construction until :meth:`release`; raises GridbotError when another writer holds it."""

    __slots__ = ("_fd", "path")

    def __init__(self, db_path: str) -> None:
        self.path = db_path + ".lock"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise GridbotError(
                f"journal {db_path} is already open for writing by {who} (one writer per file); "
                "read it with Journal(path, readonly=True) or `gridbot journal PATH`"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the lock


def _read_pid(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode(errors="replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
