"""Durable, private file writes: temp file in the same folder, fsync, rename, fsync folder."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, whole.

    The file is created with ``mode`` from the start (never world-readable, even briefly).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


class UnsafeFileError(Exception):
    """A file Bastion refuses to read: not a regular file, or larger than allowed. Callers
    turn it into their own typed error (the message is one line, naming the file)."""


def read_regular(path: Path, max_size: int) -> bytes:
    """Read a regular file whole, refusing anything else and anything over ``max_size``.

    The file is opened without blocking (a FIFO does not wait for a writer) and without
    following into a terminal; its type is checked with ``fstat`` on the opened descriptor,
    so a symlink to ``/dev/zero`` or a FIFO is refused; the size cap counts the bytes
    actually read, not what ``stat`` says.

    Raises:
        UnsafeFileError: not a regular file, or more than ``max_size`` bytes.
        OSError: the file cannot be opened or read (missing, permissions...).
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except ValueError:  # a NUL in the name
        raise UnsafeFileError("refusing to read: the file name holds a NUL character") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise UnsafeFileError(f"refusing to read {path.name}: {kind}")
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_size + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_size:
                raise UnsafeFileError(f"refusing to read {path.name}: larger than {max_size} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)
