"""Ed25519 signatures over a pack's canonical content, and trust."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import tomli_w

from bastion.app.packs.base import KEY_PREFIX, PackError, SignatureMismatchError
from bastion.app.packs.format import Pack, Signature


class Trust(StrEnum):
    """How far an installed pack is trusted."""

    BUILTIN = "built-in"
    VERIFIED = "verified"
    UNTRUSTED = "signed, key not trusted"
    UNSIGNED = "unsigned"


def public_key_text(raw: bytes) -> str:
    return KEY_PREFIX + base64.b64encode(raw).decode()


def parse_public_key(text: str) -> Any:
    """An Ed25519 public key from ``ed25519:<base64>``.

    Raises:
        PackError: not such a key.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = text.strip()
    if not text.startswith(KEY_PREFIX):
        raise PackError([f"a public key starts with {KEY_PREFIX!r}"])
    try:
        raw = base64.b64decode(text[len(KEY_PREFIX) :], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise PackError(["not a valid Ed25519 public key"]) from None


def new_signing_key() -> tuple[bytes, str]:
    """A new Ed25519 key: (private key as PKCS#8 PEM, public key text)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return pem, public_key_text(raw)


def load_signing_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise PackError(["the key file is not an unencrypted PEM private key"]) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PackError(["the key file does not hold an Ed25519 key"])
    return key


def signature_for(pack: Pack, key: Any, signer: str) -> Signature:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    value = base64.b64encode(key.sign(pack.canonical())).decode()
    return Signature(public_key=public_key_text(raw), signer=signer, value=value)


def signed_toml(text: str, signature: Signature) -> str:
    """``text`` (a pack.toml) with its ``[signature]`` table replaced by ``signature``."""
    lines = text.splitlines()
    out: list[str] = []
    skipping = False
    for line in lines:
        stripped = line.strip()
        if stripped == "[signature]":
            skipping = True
            continue
        if skipping and stripped.startswith("["):
            skipping = False
        if not skipping:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    block = tomli_w.dumps({"signature": signature.model_dump(mode="json")})
    return "\n".join(out) + "\n\n" + block


def verify(pack: Pack, trusted: Mapping[str, str]) -> tuple[Trust, str | None]:
    """How far ``pack`` is trusted, and by whom; ``trusted`` maps public keys to names.

    Raises:
        SignatureMismatchError: the pack is signed but the signature does not match.
    """
    from cryptography.exceptions import InvalidSignature

    sig = pack.signature
    if sig is None:
        return Trust.UNSIGNED, None
    key = parse_public_key(sig.public_key)
    try:
        key.verify(base64.b64decode(sig.value), pack.canonical())
    except (InvalidSignature, ValueError):
        raise SignatureMismatchError(
            [f"pack {pack.id} {pack.version}: the signature does not match its content"]
        ) from None
    if sig.public_key in trusted:
        return Trust.VERIFIED, trusted[sig.public_key]
    return Trust.UNTRUSTED, sig.signer
