"""The offline guard: nothing in this process may reach the network.

Installed first thing at start-up (see ``app.entry``), it adds a Python audit hook
(``sys.addaudithook``, PEP 578) that refuses, with :class:`OfflineError`:

- ``socket.connect``/``sendto``/``sendmsg``/``bind`` on anything but an AF_UNIX socket;
- name resolution (``getaddrinfo``, ``gethostbyname``, ...), which would query DNS;
- subprocesses other than a short allow-list of local tools.

Each refusal is counted (the status bar and ``bastion doctor`` show the count) and names the
module that tried. Audit hooks cannot be removed, so the guard lasts for the whole process.
C code that opens sockets without going through Python is not seen by the hook; llama.cpp
as built by llama-cpp-python has no network code, and the tests run the CLI in a network
namespace with no interfaces to prove the whole process stays offline.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from types import FrameType
from typing import Any

# Environment defaults that stop well-known libraries from even trying.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "TEXTUAL_DEVTOOLS": "0",
}

# Local programs a library may legitimately start (ctypes.util.find_library on Linux).
ALLOWED_PROGRAMS = frozenset({"ldconfig", "gcc", "cc", "ld", "objdump"})

_SOCKET_EVENTS = {"socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind"}
_RESOLVE_EVENTS = {
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyname_ex",
    "socket.gethostbyaddr",
    "socket.getnameinfo",
}
_PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.posix_spawn", "os.exec", "os.spawn"}

_lock = threading.Lock()
_blocked = 0
_installed = False
_last: str | None = None


class OfflineError(PermissionError):
    """Something in Bastion's process tried to reach the network (or run a program)."""


def _culprit(frame: FrameType | None) -> str:
    """The first module on the stack that is not the guard or the socket machinery."""
    skip = ("socket", "ssl", "selectors", "subprocess", "asyncio", "bastion.app.offline", "os")
    while frame is not None:
        name = frame.f_globals.get("__name__", "?")
        if not name.startswith(skip):
            return str(name)
        frame = frame.f_back
    return "?"


def _refuse(what: str) -> None:
    global _blocked, _last
    culprit = _culprit(sys._getframe(2))
    with _lock:
        _blocked += 1
        _last = f"{what} from {culprit}"
    raise OfflineError(
        f"offline guard: blocked {what} (from {culprit}); Bastion never uses the network"
    )


def _program(args: tuple[Any, ...]) -> str:
    exe = args[0] if args else ""
    if isinstance(exe, (bytes, os.PathLike)):
        exe = os.fsdecode(exe)
    if not exe and len(args) > 1 and args[1]:
        first = args[1][0] if isinstance(args[1], (list, tuple)) else args[1]
        exe = os.fsdecode(first) if isinstance(first, (bytes, os.PathLike)) else str(first)
    return os.path.basename(str(exe).split()[0]) if exe else "?"


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event in _SOCKET_EVENTS:
        sock = args[0]
        family = getattr(sock, "family", None)
        if family == socket.AF_UNIX:
            return
        address = args[1] if len(args) > 1 else "?"
        _refuse(f"{event.split('.')[1]} to {address!r}")
    elif event in _RESOLVE_EVENTS:
        _refuse(f"name lookup of {args[0]!r}" if args else "name lookup")
    elif event in _PROCESS_EVENTS:
        program = _program(args)
        if program not in ALLOWED_PROGRAMS:
            _refuse(f"running {program!r}")


def install() -> None:
    """Install the guard (idempotent) and the offline environment defaults."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    sys.addaudithook(_hook)


def installed() -> bool:
    return _installed


def blocked_count() -> int:
    """How many attempts the guard refused in this process."""
    return _blocked


def last_blocked() -> str | None:
    """What was refused last (what and from which module), for diagnostics."""
    return _last
