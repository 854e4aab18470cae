"""The recovery key as a person writes it down: 160 random bits and a 20-bit checksum in
Crockford's base32, six groups of six, e.g. ``7KQ2MZ-...``.

Crockford's alphabet has no I, L, O or U, and reading it back folds the look-alikes (``O`` is
``0``, ``I`` and ``L`` are ``1``), ignores case, spaces and dashes. The checksum is the first
20 bits of SHA-256 over the random bits: a mistyped or swapped character is caught (all but
one in a million) before the header is even tried, and the user is told it is a typo rather
than a wrong key.
"""

from __future__ import annotations

import hashlib

from bastion.storage.crypto import RECOVERY_SECRET_SIZE

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_FOLD = {"O": "0", "I": "1", "L": "1"}
_DATA_CHARS = RECOVERY_SECRET_SIZE * 8 // 5  # 32
_CHECK_BITS = 20
_CHECK_CHARS = _CHECK_BITS // 5  # 4
LENGTH = _DATA_CHARS + _CHECK_CHARS  # 36
GROUP = 6


class RecoveryKeyError(ValueError):
    """Not a well-formed recovery key (wrong length, a character outside the alphabet, or a
    checksum that does not match: a typo)."""


def _checksum(secret: bytes | bytearray) -> int:
    digest = hashlib.sha256(b"bastion recovery key\0" + bytes(secret)).digest()
    return int.from_bytes(digest[:3], "big") >> (24 - _CHECK_BITS)


def _b32(value: int, chars: int) -> str:
    return "".join(ALPHABET[(value >> (5 * (chars - 1 - i))) & 31] for i in range(chars))


def encode(secret: bytes | bytearray) -> str:
    """The recovery key for ``secret`` (20 bytes), grouped for copying by hand."""
    if len(secret) != RECOVERY_SECRET_SIZE:
        raise ValueError(f"a recovery secret has {RECOVERY_SECRET_SIZE} bytes")
    text = _b32(int.from_bytes(bytes(secret), "big"), _DATA_CHARS)
    text += _b32(_checksum(secret), _CHECK_CHARS)
    return "-".join(text[i : i + GROUP] for i in range(0, LENGTH, GROUP))


def decode(text: str | bytes | bytearray) -> bytearray:
    """The random bits of a recovery key as typed.

    Raises:
        RecoveryKeyError: wrong length, a foreign character, or a typo (checksum mismatch).
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise RecoveryKeyError("a recovery key has only letters, digits and dashes") from None
    chars = [_FOLD.get(c, c) for c in text.upper() if c not in " -\t\r\n"]
    if len(chars) != LENGTH:
        raise RecoveryKeyError(
            f"a recovery key has {LENGTH} letters and digits ({LENGTH // GROUP} groups of "
            f"{GROUP}); this one has {len(chars)}"
        )
    value = 0
    for c in chars:
        at = ALPHABET.find(c)
        if at < 0:
            raise RecoveryKeyError(
                f"{c!r} is not in a recovery key (letters and digits without I, L, O, U)"
            )
        value = (value << 5) | at
    check = value & ((1 << _CHECK_BITS) - 1)
    secret = bytearray((value >> _CHECK_BITS).to_bytes(RECOVERY_SECRET_SIZE, "big"))
    if _checksum(secret) != check:
        raise RecoveryKeyError(
            "the recovery key has a typo: its checksum does not match (check each group)"
        )
    return secret
