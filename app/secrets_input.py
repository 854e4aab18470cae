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
from dataclasses import dataclass

from zxcvbn import zxcvbn


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


MIN_SCORE = 2
"""zxcvbn scores below this are refused unless the user insists (``--weak-passphrase``)."""
_ESTIMATE_LENGTH = 100  # zxcvbn's matching grows with length; the rest adds only strength


@dataclass(frozen=True)
class Strength:
    """zxcvbn's estimate of a passphrase."""

    score: int
    """0 (guessed at once) to 4 (very strong)."""
    crack_time: str
    """How long an offline attacker at 10,000 guesses per second would need, in words."""
    warning: str
    suggestions: tuple[str, ...]

    @property
    def acceptable(self) -> bool:
        return self.score >= MIN_SCORE

    @property
    def label(self) -> str:
        return ("very weak", "weak", "fair", "good", "strong")[self.score]

    def describe(self) -> str:
        """One line: the verdict, the crack-time estimate, zxcvbn's warning and first hint."""
        parts = [f"{self.label} (cracked in {self.crack_time})"]
        parts += [t for t in (self.warning, *self.suggestions[:1]) if t]
        return "; ".join(parts)


def strength(passphrase: str | bytes | bytearray) -> Strength:
    """zxcvbn's score, crack-time estimate and suggestions (dictionaries, keyboard patterns,
    repeats, dates and l33t substitutions are all recognised)."""
    if isinstance(passphrase, bytes | bytearray):
        passphrase = bytes(passphrase).decode("utf-8", "replace")
    if not passphrase:
        return Strength(0, "no time", "", ("Choose a passphrase.",))
    result = zxcvbn(passphrase[:_ESTIMATE_LENGTH], max_length=_ESTIMATE_LENGTH)
    score = int(result["score"])
    feedback = result.get("feedback") or {}
    return Strength(
        score=score,
        crack_time=str(result["crack_times_display"]["offline_slow_hashing_1e4_per_second"]),
        warning=str(feedback.get("warning") or ""),
        suggestions=tuple(str(x) for x in feedback.get("suggestions") or ()),
    )


def check_strength(passphrase: str | bytes | bytearray, *, allow_weak: bool = False) -> Strength:
    """Refuse a passphrase zxcvbn scores below :data:`MIN_SCORE`, unless ``allow_weak``.

    Raises:
        PassphraseError: too weak (the message has zxcvbn's reason and a suggestion).
    """
    verdict = strength(passphrase)
    if not verdict.acceptable and not allow_weak:
        raise PassphraseError(
            f"passphrase too weak: {verdict.describe()}; choose a stronger one "
            "(or insist with --weak-passphrase)"
        )
    return verdict
