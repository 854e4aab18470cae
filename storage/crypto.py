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

Header, version 2 (274 bytes): version 1 with a second way in, the recovery slot, between
``wrapped`` and ``counter``::

    rsalt   16  salt of the recovery key's HKDF
    rnonce  12
    rwrapped 48 AES-256-GCM(rkek, rnonce, data_key, aad = magic|version|"recovery"|rsalt|rnonce)
    enonce  12
    escrow  48  AES-256-GCM(HKDF(data_key, "recovery-escrow"), enonce, rkek,
                aad = magic|version|"escrow"|rsalt)

``rkek = HKDF(recovery_key, rsalt, "bastion/recovery-kek")``: the recovery key carries 160
random bits, so it needs no slow KDF. The recovery slot's associated data does not cover the
passphrase slot, so changing the passphrase keeps the slot as it is; the escrow (the
recovery KEK under the data key) lets a re-key wrap a new data key for the same recovery key.
A vault without a recovery key keeps the version-1 layout.

The wrapped key's associated data is the whole prefix (magic to nonce), so any change of
the KDF parameters, a downgrade included, makes unwrapping fail. The counter changes on
every session without re-running the KDF, so it is authenticated by a MAC under a subkey of
the data key instead; the MAC covers every byte before it, both slots included, so a
changed byte breaks both ways in. Every failure reads the same: wrong passphrase (or
recovery key) or damaged header.
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
VERSION_RECOVERY = 2
KDF_ARGON2ID = 1
KEY_SIZE = 32
SALT_SIZE = 16
NONCE_SIZE = 12

_PREFIX = struct.Struct(">8sBBIII16s12s")  # magic .. nonce
_WRAPPED_SIZE = KEY_SIZE + 16
_COUNTER = struct.Struct(">Q")
_MAC_SIZE = 32
_RECOVERY = struct.Struct(f">16s12s{_WRAPPED_SIZE}s12s{_WRAPPED_SIZE}s")
HEADER_SIZE = _PREFIX.size + _WRAPPED_SIZE + _COUNTER.size + _MAC_SIZE
HEADER_SIZES = {VERSION: HEADER_SIZE, VERSION_RECOVERY: HEADER_SIZE + _RECOVERY.size}
RECOVERY_SECRET_SIZE = 20

# Bounds a header may ask for: below the floor is too weak to accept, above the ceiling a
# hostile header could make unlocking take gigabytes or minutes.
MIN_MEMORY_KIB = 8 * 1024
MAX_MEMORY_KIB = 1024 * 1024
MAX_PASSES = 16
MAX_LANES = 8


class UnlockError(Exception):
    """Wrong passphrase or damaged header: deliberately one opaque error."""

    def __init__(self, what: str = "passphrase") -> None:
        super().__init__(f"wrong {what} or damaged vault header")


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
class RecoverySlot:
    """The data key wrapped a second time, under the recovery key (header version 2)."""

    salt: bytes
    nonce: bytes
    wrapped: bytes
    escrow_nonce: bytes
    escrow: bytes

    def pack(self) -> bytes:
        return _RECOVERY.pack(self.salt, self.nonce, self.wrapped, self.escrow_nonce, self.escrow)

    @property
    def aad(self) -> bytes:
        return MAGIC + bytes([VERSION_RECOVERY]) + b"recovery" + self.salt + self.nonce

    @property
    def escrow_aad(self) -> bytes:
        return MAGIC + bytes([VERSION_RECOVERY]) + b"escrow" + self.salt


@dataclass(frozen=True)
class Header:
    """A parsed, verified header."""

    kdf: KdfParams
    salt: bytes
    nonce: bytes
    wrapped: bytes
    counter: int
    recovery: RecoverySlot | None = None

    @property
    def version(self) -> int:
        return VERSION if self.recovery is None else VERSION_RECOVERY

    @property
    def prefix(self) -> bytes:
        k = self.kdf
        return _PREFIX.pack(
            MAGIC,
            self.version,
            KDF_ARGON2ID,
            k.memory_kib,
            k.passes,
            k.lanes,
            self.salt,
            self.nonce,
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


@dataclass(frozen=True)
class PassphraseSlot:
    """What wrapping the data key under a passphrase needs: the KEK (Argon2id already run)
    and the parameters it was derived with."""

    kek: bytearray
    kdf: KdfParams
    salt: bytes


def passphrase_slot(
    passphrase: bytes | bytearray, kdf: KdfParams | None = None, *, salt: bytes | None = None
) -> PassphraseSlot:
    """Run the KDF for a new passphrase (the slow step), with a fresh salt unless given."""
    kdf = kdf or KdfParams()
    kdf.check()
    salt = salt if salt is not None else os.urandom(SALT_SIZE)
    return PassphraseSlot(bytearray(derive_kek(passphrase, salt, kdf)), kdf, salt)


def recovery_kek(secret: bytes | bytearray, salt: bytes) -> bytes:
    """The recovery slot's key-encryption key from the recovery key's random bits (HKDF)."""
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=b"bastion/recovery-kek"
    ).derive(bytes(secret))


def recovery_slot(
    data_key: bytes | bytearray,
    rkek: bytes,
    *,
    salt: bytes,
    nonce: bytes | None = None,
    escrow_nonce: bytes | None = None,
) -> RecoverySlot:
    """Wrap ``data_key`` under the recovery KEK, and escrow that KEK under the data key."""
    nonce = nonce if nonce is not None else os.urandom(NONCE_SIZE)
    escrow_nonce = escrow_nonce if escrow_nonce is not None else os.urandom(NONCE_SIZE)
    draft = RecoverySlot(salt, nonce, b"", escrow_nonce, b"")
    wrapped = AESGCM(rkek).encrypt(nonce, bytes(data_key), draft.aad)
    escrow = AESGCM(subkey(data_key, "recovery-escrow")).encrypt(
        escrow_nonce, rkek, draft.escrow_aad
    )
    return RecoverySlot(salt, nonce, wrapped, escrow_nonce, escrow)


def new_recovery(
    data_key: bytes | bytearray, *, secret: bytes | None = None, salt: bytes | None = None
) -> tuple[bytearray, RecoverySlot]:
    """A fresh recovery key's random bits and the slot that opens ``data_key`` with them."""
    raw = bytearray(secret if secret is not None else os.urandom(RECOVERY_SECRET_SIZE))
    salt = salt if salt is not None else os.urandom(SALT_SIZE)
    return raw, recovery_slot(data_key, recovery_kek(raw, salt), salt=salt)


def rewrap_recovery(
    slot: RecoverySlot, old_key: bytes | bytearray, new_key: bytes | bytearray
) -> RecoverySlot:
    """The same recovery key's slot for a new data key (for a re-key): the recovery KEK is
    taken from the escrow under the old data key.

    Raises:
        UnlockError: the escrow does not open with ``old_key``.
    """
    try:
        rkek = AESGCM(subkey(old_key, "recovery-escrow")).decrypt(
            slot.escrow_nonce, slot.escrow, slot.escrow_aad
        )
    except InvalidTag:
        raise UnlockError() from None
    return recovery_slot(new_key, rkek, salt=slot.salt)


def write_header(
    data_key: bytes | bytearray,
    slot: PassphraseSlot,
    recovery: RecoverySlot | None,
    counter: int,
    *,
    nonce: bytes | None = None,
) -> bytes:
    """The one header writer: ``data_key`` wrapped under the passphrase slot and, when
    given, the recovery slot (version 2; version 1 without), the counter, the MAC."""
    nonce = nonce if nonce is not None else os.urandom(NONCE_SIZE)
    header = Header(
        kdf=slot.kdf, salt=slot.salt, nonce=nonce, wrapped=b"", counter=counter, recovery=recovery
    )
    prefix = header.prefix
    wrapped = AESGCM(bytes(slot.kek)).encrypt(nonce, bytes(data_key), prefix)
    body = prefix + wrapped + (recovery.pack() if recovery is not None else b"")
    return _with_counter(body, data_key, counter)


def seal(
    passphrase: bytes | bytearray,
    data_key: bytes | bytearray,
    kdf: KdfParams | None = None,
    counter: int = 0,
    *,
    salt: bytes | None = None,
    nonce: bytes | None = None,
    recovery: RecoverySlot | None = None,
) -> bytes:
    """A new header wrapping ``data_key`` under ``passphrase`` (and ``recovery``)."""
    slot = passphrase_slot(passphrase, kdf, salt=salt)
    return write_header(data_key, slot, recovery, counter, nonce=nonce)


def _with_counter(body: bytes, data_key: bytes | bytearray, counter: int) -> bytes:
    signed = body + _COUNTER.pack(counter)
    return signed + _mac(data_key, signed)


def parse(blob: bytes) -> Header:
    """Parse a header (version 1 or 2) without verifying it. Raises UnlockError if it is
    malformed."""
    if len(blob) not in HEADER_SIZES.values() or len(blob) < _PREFIX.size:
        raise UnlockError()
    magic, version, kdf_id, memory, passes, lanes, salt, nonce = _PREFIX.unpack_from(blob)
    if magic != MAGIC or HEADER_SIZES.get(version) != len(blob) or kdf_id != KDF_ARGON2ID:
        raise UnlockError()
    kdf = KdfParams(memory, passes, lanes)
    try:
        kdf.check()
    except ValueError:
        raise UnlockError() from None
    at = _PREFIX.size
    wrapped = blob[at : at + _WRAPPED_SIZE]
    at += _WRAPPED_SIZE
    recovery = None
    if version == VERSION_RECOVERY:
        recovery = RecoverySlot(*_RECOVERY.unpack_from(blob, at))
        at += _RECOVERY.size
    (counter,) = _COUNTER.unpack_from(blob, at)
    return Header(
        kdf=kdf, salt=salt, nonce=nonce, wrapped=wrapped, counter=counter, recovery=recovery
    )


def unseal(blob: bytes, passphrase: bytes | bytearray) -> tuple[bytearray, Header]:
    """Verify a header and return the data key and the parsed header.

    Raises:
        UnlockError: wrong passphrase, or any byte of the header changed.
    """
    data_key, header, _ = open_slot(blob, passphrase)
    return data_key, header


def open_slot(
    blob: bytes, passphrase: bytes | bytearray
) -> tuple[bytearray, Header, PassphraseSlot]:
    """:func:`unseal`, also returning the passphrase slot (its KEK), so that the header can
    be written again (new recovery key, new counter, re-key) without asking again.

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
    return data_key, header, PassphraseSlot(bytearray(kek), header.kdf, header.salt)


def unseal_recovery(blob: bytes, secret: bytes | bytearray) -> tuple[bytearray, Header]:
    """Verify a header with the recovery key's random bits instead of the passphrase.

    Raises:
        UnlockError: no recovery slot, wrong recovery key, or any byte of the header changed.
    """
    try:
        header = parse(blob)
        slot = header.recovery
        if slot is None:
            raise UnlockError()
        data_key = bytearray(
            AESGCM(recovery_kek(secret, slot.salt)).decrypt(slot.nonce, slot.wrapped, slot.aad)
        )
        verify_mac(blob, data_key)
    except (InvalidTag, UnlockError):
        raise UnlockError("recovery key") from None
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
    body = blob[: -(_COUNTER.size + _MAC_SIZE)]
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
