"""Bastion's one crypto module: the vault header that wraps the data key.

Small and boring on purpose, in the manner of pyca's Fernet: a version byte, verify before
use, one opaque error, injectable randomness for known-answer tests.

Header, version 1 (138 bytes, integers big-endian)::

    magic    8  b"BASTVLT1"
    version  1  1
    kdf      1  1 = Argon2id
    memory   4  KiB
    passes   4
    lanes    4
    salt    16
    nonce   12
    wrapped 48  AES-256-GCM(kek, nonce, data_key, aad = every byte above)
    counter  8  rollback counter, also recorded inside the database
    mac     32  HMAC-SHA256(HKDF(data_key, "header-mac"), every byte above)

The wrapped key's associated data is the whole prefix (magic to nonce), so any change of
the KDF parameters, a downgrade included, makes unwrapping fail. The counter changes on
every session without re-running the KDF, so it is authenticated by a MAC under a subkey of
the data key instead. Every failure reads the same: wrong passphrase or damaged header.
"""

from __future__ import annotations

import hmac
import os
import struct
from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"BASTVLT1"
VERSION = 1
KDF_ARGON2ID = 1
KEY_SIZE = 32
SALT_SIZE = 16
NONCE_SIZE = 12

_PREFIX = struct.Struct(">8sBBIII16s12s")  # magic .. nonce
_WRAPPED_SIZE = KEY_SIZE + 16
_COUNTER = struct.Struct(">Q")
_MAC_SIZE = 32
HEADER_SIZE = _PREFIX.size + _WRAPPED_SIZE + _COUNTER.size + _MAC_SIZE

# Bounds a header may ask for: below the floor is too weak to accept, above the ceiling a
# hostile header could make unlocking take gigabytes or minutes.
MIN_MEMORY_KIB = 8 * 1024
MAX_MEMORY_KIB = 1024 * 1024
MAX_PASSES = 16
MAX_LANES = 8


class UnlockError(Exception):
    """Wrong passphrase or damaged header: deliberately one opaque error."""

    def __init__(self) -> None:
        super().__init__("wrong passphrase or damaged vault header")


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. The default takes ~0.6-0.8 s and 64 MiB on a 2-core laptop."""

    memory_kib: int = 64 * 1024
    passes: int = 4
    lanes: int = 1

    def check(self) -> None:
        if not (MIN_MEMORY_KIB <= self.memory_kib <= MAX_MEMORY_KIB):
            raise ValueError(f"Argon2 memory must be 8 MiB to 1 GiB, not {self.memory_kib} KiB")
        if not (1 <= self.passes <= MAX_PASSES) or not (1 <= self.lanes <= MAX_LANES):
            raise ValueError("Argon2 passes must be 1-16 and lanes 1-8")


@dataclass(frozen=True)
class Header:
    """A parsed, verified header."""

    kdf: KdfParams
    salt: bytes
    nonce: bytes
    wrapped: bytes
    counter: int

    @property
    def prefix(self) -> bytes:
        k = self.kdf
        return _PREFIX.pack(
            MAGIC, VERSION, KDF_ARGON2ID, k.memory_kib, k.passes, k.lanes, self.salt, self.nonce
        )


def new_key() -> bytearray:
    """A fresh random 256-bit data key, in a bytearray so it can be wiped."""
    return bytearray(os.urandom(KEY_SIZE))


def wipe(buf: bytearray | None) -> None:
    """Overwrite a secret in place (as far as Python allows: copies may exist)."""
    if buf is not None:
        for i in range(len(buf)):
            buf[i] = 0


def subkey(data_key: bytes | bytearray, purpose: str) -> bytes:
    """A key for one purpose, derived from the data key with HKDF-SHA256."""
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=b"bastion/" + purpose.encode()
    ).derive(bytes(data_key))


def derive_kek(passphrase: bytes | bytearray, salt: bytes, kdf: KdfParams) -> bytes:
    """The key-encryption key from the passphrase (Argon2id): the slow step."""
    return Argon2id(
        salt=salt,
        length=KEY_SIZE,
        iterations=kdf.passes,
        lanes=kdf.lanes,
        memory_cost=kdf.memory_kib,
    ).derive(bytes(passphrase))


def _mac(data_key: bytes | bytearray, body: bytes) -> bytes:
    return hmac.new(subkey(data_key, "header-mac"), body, sha256).digest()


def seal(
    passphrase: bytes | bytearray,
    data_key: bytes | bytearray,
    kdf: KdfParams | None = None,
    counter: int = 0,
    *,
    salt: bytes | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """A new header wrapping ``data_key`` under ``passphrase``."""
    kdf = kdf or KdfParams()
    kdf.check()
    salt = salt if salt is not None else os.urandom(SALT_SIZE)
    nonce = nonce if nonce is not None else os.urandom(NONCE_SIZE)
    header = Header(kdf=kdf, salt=salt, nonce=nonce, wrapped=b"", counter=counter)
    prefix = header.prefix
    kek = derive_kek(passphrase, salt, kdf)
    wrapped = AESGCM(kek).encrypt(nonce, bytes(data_key), prefix)
    return _with_counter(prefix + wrapped, data_key, counter)


def _with_counter(body: bytes, data_key: bytes | bytearray, counter: int) -> bytes:
    signed = body + _COUNTER.pack(counter)
    return signed + _mac(data_key, signed)


def parse(blob: bytes) -> Header:
    """Parse a header without verifying it. Raises UnlockError if it is malformed."""
    if len(blob) != HEADER_SIZE:
        raise UnlockError()
    magic, version, kdf_id, memory, passes, lanes, salt, nonce = _PREFIX.unpack_from(blob)
    if magic != MAGIC or version != VERSION or kdf_id != KDF_ARGON2ID:
        raise UnlockError()
    kdf = KdfParams(memory, passes, lanes)
    try:
        kdf.check()
    except ValueError:
        raise UnlockError() from None
    at = _PREFIX.size
    wrapped = blob[at : at + _WRAPPED_SIZE]
    (counter,) = _COUNTER.unpack_from(blob, at + _WRAPPED_SIZE)
    return Header(kdf=kdf, salt=salt, nonce=nonce, wrapped=wrapped, counter=counter)


def unseal(blob: bytes, passphrase: bytes | bytearray) -> tuple[bytearray, Header]:
    """Verify a header and return the data key and the parsed header.

    Raises:
        UnlockError: wrong passphrase, or any byte of the header changed.
    """
    header = parse(blob)
    kek = derive_kek(passphrase, header.salt, header.kdf)
    try:
        data_key = bytearray(AESGCM(kek).decrypt(header.nonce, header.wrapped, header.prefix))
    except InvalidTag:
        raise UnlockError() from None
    verify_mac(blob, data_key)
    return data_key, header


def verify_mac(blob: bytes, data_key: bytes | bytearray) -> Header:
    """Check the header's MAC with an already known data key (no KDF)."""
    header = parse(blob)
    body, mac = blob[:-_MAC_SIZE], blob[-_MAC_SIZE:]
    if not hmac.compare_digest(mac, _mac(data_key, body)):
        raise UnlockError()
    return header


def with_counter(blob: bytes, data_key: bytes | bytearray, counter: int) -> bytes:
    """The same header with a new rollback counter (the KDF is not run again)."""
    verify_mac(blob, data_key)
    body = blob[: _PREFIX.size + _WRAPPED_SIZE]
    return _with_counter(body, data_key, counter)


# -- the vault's signing identity (Ed25519) ----------------------------------------------
# Exports are signed so that a transcript can be told apart from one written by someone
# who only holds the vault's public age key (see storage.export).


def new_signing_key() -> bytes:
    """A fresh Ed25519 private key (32 raw bytes), kept inside the encrypted vault."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes_raw()


def signing_public_key(private: bytes | bytearray) -> bytes:
    """The public half (32 raw bytes) of an Ed25519 private key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(bytes(private)).public_key().public_bytes_raw()


def sign(private: bytes | bytearray, message: bytes) -> bytes:
    """An Ed25519 signature (64 bytes) of ``message``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(bytes(private)).sign(message)


def verify_signature(public: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is the Ed25519 signature of ``message`` under ``public``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def key_fingerprint(public: bytes) -> str:
    """A short name for a public key: the first 16 bytes of its SHA-256, hex, in groups."""
    digest = sha256(public).hexdigest()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, 32, 4))
