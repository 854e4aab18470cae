"""Extraction in a child process: a crafted file can crash, hang or balloon only the child.

The child is forked from the calling process (so the document's bytes are already in its
memory, and nothing is written anywhere to hand them over), then before parsing it:

- installs the offline guard (:mod:`bastion.app.offline`, inherited anyway when present);
- limits CPU time (``RLIMIT_CPU``: the kernel stops it), address space (``RLIMIT_AS``: what it
  already maps plus :attr:`Limits.memory`) and file size (``RLIMIT_FSIZE`` = 0: any write to
  any file fails, so parsing cannot put a byte of the document on disk);

and it sends its result as JSON through a pipe, which the parent reads up to
:attr:`Limits.output` bytes and :attr:`Limits.wall_s` seconds before killing it. The parent
only ever reports a fixed one-line reason (the child's own messages are
:class:`~bastion.app.documents.formats.FormatError` texts, which name no content).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import time
from dataclasses import dataclass

from bastion.app import offline
from bastion.app.documents.formats import FormatError, ParsedDocument, parse


@dataclass(frozen=True)
class Limits:
    cpu_s: int = 60
    """CPU seconds the child may use."""
    wall_s: float = 120.0
    """Seconds the parent waits before killing it."""
    memory: int = 1536 * 1024 * 1024
    """Bytes of address space the child may add to what it inherited."""
    output: int = 64 * 1024 * 1024
    """Most bytes of extracted text (as JSON) accepted."""


DEFAULT_LIMITS = Limits()


def _vm_size() -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _child(kind: str, data: bytes, limits: Limits, out: int) -> None:
    """Runs in the forked child; never returns."""
    status = 0
    try:
        offline.install()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (_vm_size() + limits.memory,) * 2)
        try:
            doc = parse(kind, data)
            payload = b"K" + doc.model_dump_json().encode("utf-8")
        except FormatError as exc:
            payload = b"E" + str(exc).encode("utf-8")
        except MemoryError:
            payload = b"E" + b"the file needs too much memory to read (refused)"
        except RecursionError:
            payload = b"E" + b"the file is nested too deeply to read (refused)"
        except Exception as exc:  # a library's own error: its type only, never its text
            payload = b"E" + f"damaged {kind.upper()}: {type(exc).__name__}".encode()
        if len(payload) > limits.output:
            payload = b"E" + b"the extracted text is larger than the output limit (refused)"
        view = memoryview(payload)
        while view:
            written = os.write(out, view[: 1 << 20])
            view = view[written:]
    except BaseException:
        status = 1
    finally:
        os._exit(status)


def extract(kind: str, data: bytes, limits: Limits = DEFAULT_LIMITS) -> ParsedDocument:
    """Parse ``data`` as ``kind`` in a limited child process.

    Raises:
        FormatError: the file cannot be read, or the child hit a limit (one line).
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_fd)
        _child(kind, data, limits, write_fd)
    os.close(write_fd)
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + limits.wall_s
    too_big = timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_fd], [], [], min(left, 1.0))
            if not ready:
                continue
            piece = os.read(read_fd, 1 << 20)
            if not piece:
                break
            size += len(piece)
            if size > limits.output + 1:
                too_big = True
                break
            chunks.append(piece)
    finally:
        os.close(read_fd)
        if timed_out or too_big:
            _kill(pid)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        raise FormatError(f"reading took longer than {limits.wall_s:.0f} s (stopped)")
    if too_big:
        raise FormatError("the extracted text is larger than the output limit (refused)")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            raise FormatError(f"reading used more than {limits.cpu_s} s of CPU (stopped)")
        if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT):
            raise FormatError(f"the {kind.upper()} reader crashed on this file (refused)")
        raise FormatError(f"the {kind.upper()} reader stopped (signal {sig})")
    payload = b"".join(chunks)
    if not payload:
        raise FormatError("the file needs too much memory to read (refused)")
    if payload[:1] == b"E":
        raise FormatError(payload[1:].decode("utf-8", "replace").splitlines()[0])
    try:
        return ParsedDocument.model_validate(json.loads(payload[1:]))
    except ValueError:
        raise FormatError("the reader returned an unreadable result (refused)") from None


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
