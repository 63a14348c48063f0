"""Writing the gateway's files: whole or not at all, never through a symlink, private modes.

Everything the gateway or its CLI writes (claim reports, status, device keys) goes through
:func:`write_atomic`: the bytes go to a fresh temporary file in the target's directory,
are flushed to disk, and ``os.replace`` puts the file in place. A reader never sees half a
report, a crash leaves the old file, and a symlink planted at the target is replaced, not
followed (``os.replace`` renames over the link itself), so a root run of ``coldchain
trace --out /tmp/x`` cannot be tricked into overwriting ``/etc/shadow``.

Modes are set with ``fchmod`` on the open file, so they hold whatever the umask is:
0600 for secrets and keys, 0640 for outputs (the hub's admin group may read them).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Final

PRIVATE: Final = 0o600
"""Keys, secrets, the journal: the owner only."""
SHARED: Final = 0o640
"""Reports, status: the owner writes, its group reads, nobody else."""


class UnsafePath(OSError):
    """A path the gateway refuses to write through (a symlink, not a regular file)."""


def write_atomic(path: str | Path, data: bytes, mode: int = SHARED) -> Path:
    """Write data to path through a temp file and ``os.replace``; mode whatever the umask.

    The target may be missing or a regular file. A directory at the target is refused;
    a symlink at the target is replaced by the new file (its destination is untouched).
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path()
    try:
        existing = target.lstat()
    except FileNotFoundError:
        existing = None
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        msg = f"{target} is a directory"
        raise UnsafePath(msg)
    # O_EXCL + O_NOFOLLOW: the temp name cannot be a planted file or link either.
    for attempt in range(100):
        tmp = directory / f".{target.name}.{os.getpid()}.{attempt}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            break
        except FileExistsError:
            continue
    else:
        msg = f"cannot create a temporary file next to {target}"
        raise UnsafePath(msg)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(directory)
    return target


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def make_private_dir(path: str | Path, mode: int = 0o750) -> Path:
    """Create a directory (and parents) with mode, whatever the umask; refuse a symlink."""
    target = Path(path)
    try:
        existing = target.lstat()
    except FileNotFoundError:
        existing = None
    if existing is not None and stat.S_ISLNK(existing.st_mode):
        msg = f"{target} is a symlink; refusing to write reports through it"
        raise UnsafePath(msg)
    target.mkdir(parents=True, exist_ok=True)
    if existing is None:
        target.chmod(mode)
    return target


def restrict_mode(path: str | Path, mode: int = PRIVATE) -> None:
    """Take away every permission bit beyond mode from a regular file (never adds any).

    For files another library creates (the SQLite journal, its WAL and SHM): whatever the
    umask was, nobody outside the owner and group reads the hub's record.
    """
    target = Path(path)
    with contextlib.suppress(FileNotFoundError):
        info = target.lstat()
        current = stat.S_IMODE(info.st_mode)
        if stat.S_ISREG(info.st_mode) and current & ~mode:
            target.chmod(current & mode)
