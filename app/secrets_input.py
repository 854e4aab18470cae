"""Reading passphrases: from a file descriptor, the environment, or the terminal (no echo).

A passphrase read from the environment is removed from it at once (and overwritten where
``/proc/PID/environ`` would still show it).

Passphrases are returned as ``bytearray`` so callers can wipe them after use.
"""

from __future__ import annotations

import contextlib
import ctypes
import getpass
import os
import warnings


class PassphraseError(Exception):
    """No passphrase could be read, or the two entries differ."""


def _read_fd(fd: int) -> bytearray:
    chunks = bytearray()
    while True:
        try:
            b = os.read(fd, 1)
        except OSError as exc:
            raise PassphraseError(
                f"cannot read the passphrase from fd {fd}: {exc.strerror}"
            ) from None
        if not b or b == b"\n":
            break
        chunks += b
    if chunks.endswith(b"\r"):
        del chunks[-1]
    return chunks


def scrub_environment(name: str) -> None:
    """Remove ``name`` from the environment, and overwrite its value in the process's
    original environment block, which ``/proc/PID/environ`` shows for the process's whole
    life (``unsetenv`` alone only drops the pointer to it)."""
    prefix = name.encode() + b"="
    with contextlib.suppress(OSError, ValueError, AttributeError):
        libc = ctypes.CDLL(None)
        environ = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
        i = 0
        while environ[i]:
            address = environ[i]
            entry = ctypes.string_at(address)
            if entry.startswith(prefix):
                ctypes.memset(address + len(prefix), 0, len(entry) - len(prefix))
            i += 1
    os.environ.pop(name, None)


def read_passphrase(
    *,
    fd: int | None = None,
    env: str = "BASTION_PASSPHRASE",
    prompt: str = "Vault passphrase: ",
    confirm: bool = False,
) -> bytearray:
    """The passphrase from ``fd``, else ``$env``, else the terminal (asked twice if ``confirm``).

    Raises:
        PassphraseError: nothing to read, empty, or the confirmation differs.
    """
    if fd is not None:
        value = _read_fd(fd)
    elif os.environ.get(env):
        value = bytearray(os.environ[env].encode("utf-8"))
        scrub_environment(env)
    else:
        try:
            # getpass falls back to reading stdin *with echo* when there is no terminal;
            # turn that warning into an error so a passphrase is never echoed.
            with warnings.catch_warnings():
                warnings.simplefilter("error", getpass.GetPassWarning)
                value = bytearray(getpass.getpass(prompt).encode("utf-8"))
                if confirm:
                    again = bytearray(getpass.getpass("Repeat it: ").encode("utf-8"))
                    if again != value:
                        raise PassphraseError("the two passphrases differ")
        except (EOFError, OSError, getpass.GetPassWarning):
            raise PassphraseError(
                f"no passphrase: set {env} or use --passphrase-fd, or run in a terminal"
            ) from None
    if not value:
        raise PassphraseError("the passphrase is empty")
    return value


def strength(passphrase: str) -> tuple[int, str]:
    """A rough 0-4 score and a hint, for feedback while the user types (no dictionary)."""
    n = len(passphrase)
    classes = sum(
        any(f(c) for c in passphrase)
        for f in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )
    words = len(passphrase.split())
    if n < 8:
        return 0, "too short: use at least 12 characters, or four random words"
    if n < 12 and classes < 3:
        return 1, "weak: longer is stronger; try four or more random words"
    if n < 16 and words < 4:
        return 2, "fair: a few more characters or words would help"
    if n < 24 and words < 5:
        return 3, "good"
    return 4, "strong"
