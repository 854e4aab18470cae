"""The document library: add a file (read it, extract it in the sandbox, chunk it, store it
in the vault), find one by id or path, search, remove."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from bastion.app.documents import sandbox
from bastion.app.documents.chunking import chunk_pages, page_texts
from bastion.app.documents.formats import FormatError, kind_for
from bastion.storage.schema import DocumentRecord
from bastion.storage.store import NotFoundError, Store

MAX_FILE_SIZE = 100 * 1024 * 1024
"""Largest file accepted (bytes)."""


class DocumentError(Exception):
    """A document cannot be added or found; one line for the user (names the file, never its
    content)."""


@dataclass
class Added:
    record: DocumentRecord
    created: bool
    """False when the same file (by SHA-256) was already in the vault."""


def read_file(path: Path, max_size: int = MAX_FILE_SIZE) -> bytes:
    """A regular file's bytes (no device, FIFO or directory; symlinks followed once).

    Raises:
        DocumentError: not a regular file, too large or unreadable.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DocumentError(f"{path.name}: no such file") from None
    except OSError as exc:
        raise DocumentError(f"{path.name}: cannot open ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DocumentError(f"{path.name}: not a regular file")
        if info.st_size > max_size:
            raise DocumentError(
                f"{path.name}: too large ({info.st_size // (1024 * 1024)} MB; "
                f"at most {max_size // (1024 * 1024)} MB)"
            )
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            data = f.read(max_size + 1)
    except OSError as exc:
        raise DocumentError(f"{path.name}: cannot read ({exc.strerror})") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_size:
        raise DocumentError(f"{path.name}: too large")
    return data


def add_bytes(
    store: Store,
    name: str,
    data: bytes,
    *,
    keep_original: bool = False,
    limits: sandbox.Limits = sandbox.DEFAULT_LIMITS,
) -> Added:
    """Add a file's content under the title ``name``.

    Raises:
        DocumentError: unsupported, mismatched, damaged, encrypted, scanned or over a limit.
    """
    try:
        kind = kind_for(name)
    except FormatError as exc:
        raise DocumentError(f"{name}: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    existing = store.document_by_sha256(digest)
    if existing is not None:
        record, _ = store.add_document(
            sha256=digest,
            title=existing.title,
            kind=existing.kind,
            paged=existing.paged,
            pages=[],
            chunks=[],
            size=len(data),
            original=data if keep_original else None,
        )
        return Added(record, False)
    try:
        parsed = sandbox.extract(kind, data, limits)
    except FormatError as exc:
        raise DocumentError(f"{name}: {exc}") from None
    chunks = chunk_pages(parsed.pages)
    record, created = store.add_document(
        sha256=digest,
        title=name,
        kind=parsed.kind,
        paged=parsed.paged,
        pages=page_texts(parsed.pages),
        chunks=[(c.page, c.heading, c.text) for c in chunks],
        size=len(data),
        empty_pages=parsed.empty_pages,
        original=data if keep_original else None,
    )
    return Added(record, created)


def add_file(
    store: Store,
    path: Path,
    *,
    keep_original: bool = False,
    limits: sandbox.Limits = sandbox.DEFAULT_LIMITS,
) -> Added:
    """Read, extract (in the sandbox) and store one file; the title is its name."""
    return add_bytes(store, path.name, read_file(path), keep_original=keep_original, limits=limits)


def looks_like_path(ref: str) -> bool:
    return "/" in ref or "." in ref or Path(ref).exists()


def resolve(store: Store, ref: str, *, keep_original: bool = False) -> DocumentRecord:
    """A document by id (or unambiguous prefix), or a file path (added first).

    Raises:
        DocumentError: no such document or file, or the file cannot be added.
    """
    path = Path(ref).expanduser()
    if looks_like_path(ref) and (path.exists() or path.is_symlink()):
        return add_file(store, path, keep_original=keep_original).record
    try:
        return store.find_document(ref)
    except NotFoundError as exc:
        if looks_like_path(ref):
            raise DocumentError(f"{path.name}: no such file") from None
        raise DocumentError(str(exc)) from None


def label(record: DocumentRecord, page: int | None) -> str:
    """``title, p. N`` (or the title alone for an unpaged document)."""
    return f"{record.title}, p. {page}" if record.paged and page is not None else record.title
