"""Export, verify, import, backup and restore: use cases over the store and storage.export.

Keys kept in the vault's settings (inside the encrypted database):

- ``age_identity``: the age identity exports to this vault are encrypted to;
  ``age_identities_previous``: earlier or restored ones, still used to decrypt (a key is
  never taken away: ``keys new --force`` and ``restore`` add, they do not replace);
- ``signing_key``: the vault's Ed25519 signing identity (exports are signed with it);
- ``trusted_export_keys``: fingerprints of other vaults' signing keys trusted with
  ``keys trust``, with a name for each (a restored backup's own key is added here).
"""

from __future__ import annotations

import base64
import binascii
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from bastion.app import audit, pack_library, packs
from bastion.storage import crypto
from bastion.storage import export as fmt
from bastion.storage.schema import Conversation, Message, MessageMeta
from bastion.storage.store import NotFoundError, Store

IDENTITY_KEY = "age_identity"
PREVIOUS_IDENTITIES_KEY = "age_identities_previous"
SIGNING_KEY = "signing_key"
TRUSTED_EXPORT_KEYS = "trusted_export_keys"
# Settings that hold keys: restore merges them instead of overwriting.
KEY_SETTINGS = frozenset({IDENTITY_KEY, PREVIOUS_IDENTITIES_KEY, SIGNING_KEY, TRUSTED_EXPORT_KEYS})


def vault_identity(store: Store) -> Any | None:
    """The vault's own age identity (kept inside the encrypted vault), if it has one."""
    text = store.get_setting(IDENTITY_KEY)
    return fmt.parse_identity(text) if isinstance(text, str) and text else None


def vault_identities(store: Store) -> list[Any]:
    """Every age identity the vault can decrypt with: its own first, then earlier ones."""
    found = []
    own = vault_identity(store)
    if own is not None:
        found.append(own)
    for text in _previous_identities(store):
        try:
            found.append(fmt.parse_identity(text))
        except fmt.ExportError:
            continue
    return found


def _previous_identities(store: Store) -> list[str]:
    value = store.get_setting(PREVIOUS_IDENTITIES_KEY, [])
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _keep_identity(store: Store, text: str) -> None:
    """Add an age identity to the earlier ones (used for decryption only)."""
    kept = _previous_identities(store)
    own = store.get_setting(IDENTITY_KEY)
    if text and text != own and text not in kept:
        store.set_setting(PREVIOUS_IDENTITIES_KEY, [*kept, text])


def ensure_identity(store: Store) -> Any:
    """The vault's age identity, made now if it has none."""
    identity = vault_identity(store)
    if identity is None:
        identity = fmt.new_identity()
        store.set_setting(IDENTITY_KEY, fmt.identity_text(identity))
    return identity


def record_export(
    store: Store,
    event: str,
    conversation_ids: list[str],
    recipients: list[str],
    *,
    passphrase: bool,
    **extra: Any,
) -> None:
    """Audit an export or a backup: which conversations, to whom (key fingerprints)."""
    audit.record(
        store,
        event,
        conversations=conversation_ids,
        recipients=[audit.fingerprint(r) for r in recipients],
        passphrase=passphrase,
        **extra,
    )


def record_import(
    store: Store,
    event: str,
    data: bytes,
    new_ids: list[str],
    header: fmt.AgeHeader,
    authenticity: str = "hash-chain-verified",
) -> None:
    """Audit an import or a restore: the file's SHA-256 (its origin), how it was encrypted,
    and its authenticity (authentic, intact but unsigned or signed by an unknown key; an
    altered file is refused, so nothing altered is recorded as imported)."""
    audit.record(
        store,
        event,
        origin_sha256=audit.file_sha256(data),
        encryption="passphrase" if "scrypt" in header.kinds else "recipient",
        authenticity=authenticity,
        conversations=new_ids,
    )


def new_identity(store: Store) -> Any:
    """A new age identity for the vault; the old one is kept for decrypting earlier files."""
    old = store.get_setting(IDENTITY_KEY)
    with store.transaction():
        if isinstance(old, str) and old:
            store.set_setting(IDENTITY_KEY, None)
            _keep_identity(store, old)
        return ensure_identity(store)


# -- the signing identity --------------------------------------------------------------


def signing_key(store: Store) -> bytes:
    """The vault's Ed25519 private key, made now if it has none."""
    value = store.get_setting(SIGNING_KEY)
    if isinstance(value, str):
        try:
            raw = bytes.fromhex(value)
            if len(raw) == 32:
                return raw
        except ValueError:
            pass
    raw = crypto.new_signing_key()
    store.set_setting(SIGNING_KEY, raw.hex())
    return raw


@dataclass(frozen=True)
class SigningIdentity:
    """The public part of a vault's signing identity."""

    public_key: str
    """``ed25519:<base64>``"""
    fingerprint: str


def signing_identity(store: Store) -> SigningIdentity:
    public = crypto.signing_public_key(signing_key(store))
    return SigningIdentity(
        "ed25519:" + base64.b64encode(public).decode(), crypto.key_fingerprint(public)
    )


def trusted_export_keys(store: Store) -> dict[str, str]:
    """Fingerprints of signing keys trusted for exports, with the name given for each."""
    value = store.get_setting(TRUSTED_EXPORT_KEYS, {})
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def parse_key_or_fingerprint(text: str) -> str:
    """The fingerprint named by ``ed25519:<base64>`` or by a fingerprint itself.

    Raises:
        ExportError: neither.
    """
    text = text.strip()
    if text.startswith("ed25519:"):
        try:
            raw = base64.b64decode(text[len("ed25519:") :], validate=True)
        except ValueError:
            raw = b""
        if len(raw) == 32:
            return crypto.key_fingerprint(raw)
        raise fmt.ExportError("not a valid ed25519 public key")
    compact = text.replace(":", "").lower()
    if len(compact) == 32 and all(c in "0123456789abcdef" for c in compact):
        return ":".join(compact[i : i + 4] for i in range(0, 32, 4))
    raise fmt.ExportError(
        "give a signing key (ed25519:...) or its fingerprint (as `bastion keys show` prints)"
    )


def trust_export_key(store: Store, key: str, name: str) -> str:
    """Trust the signing key ``key`` (public key or fingerprint) as ``name``; returns its
    fingerprint."""
    fingerprint = parse_key_or_fingerprint(key)
    keys = trusted_export_keys(store)
    keys[fingerprint] = name
    store.set_setting(TRUSTED_EXPORT_KEYS, keys)
    return fingerprint


def untrust_export_key(store: Store, key: str) -> str:
    fingerprint = parse_key_or_fingerprint(key)
    keys = trusted_export_keys(store)
    if keys.pop(fingerprint, None) is None:
        raise NotFoundError("that key is not trusted")
    store.set_setting(TRUSTED_EXPORT_KEYS, keys)
    return fingerprint


def _message_dict(m: Message, redaction: fmt.Redaction | None) -> dict[str, Any]:
    content = redaction.apply(m.content) if redaction else m.content
    stats = m.meta.stored() or {}
    if redaction and stats.get("sources"):
        # Passages of the user's own documents are theirs: redacted like the messages.
        stats["sources"] = [
            {**s, "text": redaction.apply(s["text"])}
            if s.get("document_id") and isinstance(s.get("text"), str)
            else s
            for s in stats["sources"]
        ]
    return {
        "id": m.id,
        "parent_id": m.parent_id,
        "role": m.role,
        "content": content,
        "created": m.created.isoformat(),
        "pinned": m.pinned,
        "stats": stats,
        "sources": stats.get("sources", []),
    }


def conversation_dict(
    store: Store, conv: Conversation, redaction: fmt.Redaction | None = None
) -> dict[str, Any]:
    """A conversation with every message of every branch, oldest first."""
    disclaimer = None
    if conv.pack_id:
        try:
            source = store.get_pack(conv.pack_id).source
            value = tomllib.loads(source).get("disclaimer")
            disclaimer = value if isinstance(value, str) else None
        except (NotFoundError, tomllib.TOMLDecodeError):
            disclaimer = None  # a removed pack: the export still names its id and version
    messages = [_message_dict(m, redaction) for m in store.all_messages(conv.id)]
    return {
        "id": conv.id,
        "title": redaction.apply(conv.title) if redaction else conv.title,
        "created": conv.created.isoformat(),
        "updated": conv.updated.isoformat(),
        "model": {"name": conv.model_name, "sha256": conv.model_sha256},
        "pack": {"id": conv.pack_id, "version": conv.pack_version, "disclaimer": disclaimer},
        "settings": conv.settings,
        "pinned": conv.pinned,
        "imported": conv.imported,
        "head_id": conv.head_id,
        "messages": messages,
        "cited_documents": cited_documents(messages),
    }


def cited_documents(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents the messages' passages come from: id, title, SHA-256 of the file and
    the pages cited (the passages themselves travel with each question; whole documents
    never go into a transcript)."""
    found: dict[str, dict[str, Any]] = {}
    for m in messages:
        for s in m["stats"].get("sources", []) if m["role"] == "user" else []:
            doc_id = s.get("document_id")
            if not doc_id:
                continue
            entry = found.setdefault(
                doc_id,
                {"id": doc_id, "title": s.get("title"), "sha256": s.get("sha256"), "pages": []},
            )
            if s.get("page") is not None and s["page"] not in entry["pages"]:
                entry["pages"].append(s["page"])
    for entry in found.values():
        entry["pages"].sort()
    return list(found.values())


def build_export(
    store: Store, conversation_ids: list[str] | None, *, redact: bool = False
) -> tuple[dict[str, Any], fmt.Redaction | None]:
    """The export document for some (or, with None, all) conversations."""
    redaction = fmt.Redaction() if redact else None
    convs = (
        store.list_conversations()
        if conversation_ids is None
        else [store.get_conversation(c) for c in conversation_ids]
    )
    doc = fmt.transcript_document([conversation_dict(store, c, redaction) for c in convs])
    fmt.sign_document(doc, signing_key(store))
    return doc, redaction


Document = dict[str, Any] | fmt.ExportedDocument
"""An export document: as parsed (typed, with the exact JSON in ``.raw``) or as built."""


def _raw(doc: Document) -> dict[str, Any]:
    return doc.raw if isinstance(doc, fmt.ExportedDocument) else doc


def render(doc: Document, form: str) -> bytes:
    doc = _raw(doc)
    if form == "json":
        import json

        return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")
    return fmt.render_markdown(doc).encode("utf-8")


class Authenticity(StrEnum):
    """What `verify` concludes about a file (exit status 0, 3, 3, 1)."""

    AUTHENTIC = "authentic"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown key"
    ALTERED = "altered"


@dataclass
class Verification:
    """What `verify` found: the document, one chain report per conversation, whether the
    readable Markdown matches the JSON, and the signature."""

    document: dict[str, Any]
    reports: list[fmt.ChainReport]
    body_altered: bool = False
    body_altered_id: str | None = None
    signature: fmt.SignatureCheck = field(default_factory=lambda: fmt.SignatureCheck("unsigned"))
    signer: str | None = None
    """Who the key belongs to: ``this vault``, a trusted name, or None (unknown)."""

    @property
    def intact(self) -> bool:
        return all(r.intact for r in self.reports) and not self.body_altered

    @property
    def status(self) -> Authenticity:
        if not self.intact or self.signature.status == "invalid":
            return Authenticity.ALTERED
        if self.signature.status == "unsigned":
            return Authenticity.UNSIGNED
        if self.signer is None:
            return Authenticity.UNKNOWN_KEY
        return Authenticity.AUTHENTIC

    def describe(self) -> str:
        """One line saying what the file is (no message text; a title is the caller's)."""
        status = self.status
        fp = self.signature.fingerprint
        if status is Authenticity.AUTHENTIC:
            return f"authentic: signed by {self.signer} (key {fp})"
        if status is Authenticity.UNKNOWN_KEY:
            return (
                f"intact but NOT authenticated: signed by an unknown key {fp} "
                "(trust it with `bastion keys trust` if you know whose it is)"
            )
        if status is Authenticity.UNSIGNED:
            return "intact but NOT authenticated: the file is not signed"
        if self.signature.status == "invalid" and self.intact:
            return "ALTERED: the signature does not match the content"
        where = self.first_altered()
        return "ALTERED after it was made" + (f" ({where})" if where else "")

    def first_altered(self) -> str | None:
        for r in self.reports:
            if not r.intact:
                if r.altered_id:
                    return f"first at message {(r.first_altered or 0) + 1}, id {r.altered_id}"
                return "the chain head does not match"
        if self.body_altered:
            if self.body_altered_id:
                return f"the readable text of message id {self.body_altered_id} differs"
            return "the readable text differs from the signed document"
        return None


def verify(plaintext: bytes, store: Store | None = None) -> Verification:
    """Parse and check a decrypted export: chains, readable part, signature, and whose key
    signed it (this vault's, or one trusted in ``store``).

    Raises:
        ExportError: not a well-formed Bastion document.
    """
    doc = fmt.parse_document(plaintext).raw
    convs = doc.get("conversations", [])
    body_altered, body_id = fmt.body_mismatch(plaintext, doc)
    result = Verification(
        doc,
        [fmt.verify_chain(c) for c in convs],
        body_altered,
        body_id,
        fmt.check_signature(doc),
    )
    fp = result.signature.fingerprint
    if store is not None and result.signature.status == "valid" and fp:
        if fp == signing_identity(store).fingerprint:
            result.signer = "this vault"
        else:
            result.signer = trusted_export_keys(store).get(fp)
    return result


@dataclass
class ImportResult:
    """The new conversations' ids and what the file was (authentic, unsigned, unknown key)."""

    ids: list[str]
    verification: Verification


def import_verified(store: Store, plaintext: bytes) -> ImportResult:
    """Verify a decrypted export and add its conversations, marked imported.

    Raises:
        ExportError: malformed, or altered (nothing altered is imported).
    """
    result = verify(plaintext, store)
    if result.status is Authenticity.ALTERED:
        raise fmt.ExportError(f"refusing to import: the file was {result.describe()}")
    ids = import_conversations(store, result.document)
    return ImportResult(ids, result)


def import_conversations(store: Store, doc: Document) -> list[str]:
    """Add the document's conversations as new ones (never overwriting), marked imported.

    Raises:
        ExportError: the document's hash chain is broken (altered content is not imported).
    """
    doc = _raw(doc)
    reports = [fmt.verify_chain(c) for c in doc.get("conversations", [])]
    broken = [r for r in reports if not r.intact]
    if broken:
        raise fmt.ExportError(
            f"refusing to import: a conversation was altered "
            f"(first at message {(broken[0].first_altered or 0) + 1})"
        )
    new_ids = []
    with store.transaction():  # all conversations or none
        for conv in doc.get("conversations", []):
            new_ids.append(_add_conversation(store, conv, imported=True))
    return new_ids


def decrypt_export(
    store: Store | None,
    data: bytes,
    passphrase: str | None = None,
    identities: list[Any] | None = None,
) -> bytes:
    """Decrypt an export in memory with a passphrase, the given identities, or every age
    identity of the vault (its own and earlier ones).

    Raises:
        ExportError: no identity to decrypt with, or the opaque decryption error.
    """
    header = fmt.read_header(data)
    keys = list(identities or [])
    if "scrypt" not in header.kinds and not keys:
        keys = vault_identities(store) if store is not None else []
        if not keys:
            raise fmt.ExportError("this vault has no age identity to decrypt with")
    return fmt.decrypt(data, identities=keys, passphrase=passphrase)


def export_file(
    store: Store,
    conversation_ids: list[str] | None,
    out: Path,
    *,
    passphrase: str | None = None,
    recipients: list[Any] | None = None,
    form: str = "md",
    redact: bool = False,
) -> dict[str, Any]:
    """Build, sign, encrypt (to the vault's own key unless told otherwise) and write
    atomically; returns the document."""
    keys = list(recipients or [])
    if passphrase is None and not keys:
        keys = [ensure_identity(store).to_public()]
    doc, _ = build_export(store, conversation_ids, redact=redact)
    blob = fmt.encrypt(render(doc, form), recipients=keys, passphrase=passphrase)
    fmt.write_encrypted(out, blob)
    return doc


def _add_conversation(store: Store, conv: dict[str, Any], *, imported: bool) -> str:
    model = conv.get("model") or {}
    pack = conv.get("pack") or {}
    created = datetime.fromisoformat(conv["created"])
    new = store.create_conversation(
        str(conv["title"]),
        model_name=model.get("name"),
        model_sha256=model.get("sha256"),
        pack_id=pack.get("id"),
        pack_version=pack.get("version"),
        settings=conv.get("settings") or {},
        imported=imported,
        created=created,
    )
    ids: dict[str, str] = {}
    head = None
    for m in conv.get("messages", []):
        parent = ids.get(m["parent_id"]) if m.get("parent_id") else None
        saved = store.add_message(
            new.id,
            m["role"],
            m["content"],
            parent_id=parent,
            meta=MessageMeta.read(m.get("stats")),
            pinned=m.get("pinned") is True,
            created=datetime.fromisoformat(m["created"]),
        )
        ids[m["id"]] = saved.id
        if m["id"] == conv.get("head_id"):
            head = saved.id
    if head is not None:
        store.select_branch(head)
    if conv.get("pinned") is True:
        store.set_pinned(new.id, True)
    return new.id


def build_backup(store: Store) -> dict[str, Any]:
    """Everything in the vault: conversations (all branches), packs and settings (the
    vault's keys among them, made first if missing, so a restore can open its exports)."""
    ensure_identity(store)
    signing_key(store)
    doc = fmt.transcript_document([conversation_dict(store, c) for c in store.list_conversations()])
    doc["format"] = fmt.BACKUP_FORMAT
    doc["packs"] = [p.model_dump(mode="json") for p in store.list_packs()]
    doc["settings"] = store.all_settings()
    doc["documents"] = [_document_dict(store, d) for d in store.list_documents()]
    links: dict[str, list[str]] = {}
    for conv in store.list_conversations():
        for d in store.conversation_documents(conv.id):
            links.setdefault(d.id, []).append(conv.id)
    for entry in doc["documents"]:
        entry["conversations"] = links.get(entry["id"], [])
    return doc


def _document_dict(store: Store, d: Any) -> dict[str, Any]:
    """A document in a backup: its record, page texts, chunks and (if kept) original."""
    original = store.document_original(d.id)
    return {
        **d.model_dump(mode="json", exclude={"has_original"}),
        "page_texts": [p.text for p in store.document_pages(d.id)],
        "chunks": [
            {"page": c.page, "heading": c.heading, "text": c.text}
            for c in store.document_chunks(d.id)
        ],
        "original": base64.b64encode(original).decode("ascii") if original else None,
    }


def _restore_document(store: Store, entry: Any) -> str:
    """Add a backed-up document; returns its id in this vault."""
    try:
        original = (
            base64.b64decode(entry["original"], validate=True) if entry.get("original") else None
        )
        record, _ = store.add_document(
            sha256=str(entry["sha256"]),
            title=str(entry["title"]),
            kind=str(entry["kind"]),
            paged=bool(entry["paged"]),
            pages=[str(t) for t in entry["page_texts"]],
            chunks=[(int(c["page"]), str(c["heading"]), str(c["text"])) for c in entry["chunks"]],
            size=int(entry["size"]),
            empty_pages=int(entry.get("empty_pages") or 0),
            original=original,
            added=datetime.fromisoformat(str(entry["added"])),
        )
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise fmt.ExportError("refusing to restore: a document entry is malformed") from None
    return record.id


def backup_keys(store: Store, doc: dict[str, Any]) -> dict[str, str]:
    """The pack-signing keys a backup would trust that this vault does not yet: restoring
    them needs the user's consent (a crafted backup could otherwise vouch for any pack).

    Raises:
        ExportError: a key in the backup is malformed.
    """
    value = (doc.get("settings") or {}).get(pack_library.TRUSTED_KEYS) or {}
    if not isinstance(value, dict):
        raise fmt.ExportError("refusing to restore: the backup's trusted keys are malformed")
    current = pack_library.trusted_keys(store)
    new: dict[str, str] = {}
    for key, name in value.items():
        try:
            packs.parse_public_key(str(key))
        except packs.PackError:
            raise fmt.ExportError("refusing to restore: a trusted key is malformed") from None
        if str(key).strip() not in current:
            new[str(key).strip()] = str(name)[:100]
    return new


def restore_backup(
    store: Store,
    doc: Document,
    confirm_keys: Callable[[dict[str, str]], bool] | None = None,
) -> int:
    """Restore a backup into an empty vault; returns the number of conversations.

    Packs are restored as imports: never as built-ins (the built-ins are the ones this
    version ships), and under a built-in's id only when signed by a trusted key. The
    backup's trusted pack-signing keys are added only if ``confirm_keys`` (shown them)
    returns true; without it, none are.

    Keys are never taken away: the vault keeps its own age identity, signing key and
    settings; the backup's identities are added (so exports made under either open) and
    its signing key is trusted as "restored backup"; settings the vault does not have are
    taken from the backup.

    Raises:
        ExportError: not a backup, the vault is not empty, or the content was altered.
    """
    doc = _raw(doc)
    if doc.get("format") != fmt.BACKUP_FORMAT:
        raise fmt.ExportError("not a Bastion backup (use `bastion import` for transcripts)")
    if (
        store.list_conversations()
        or store.list_documents()
        or any(p.signer != packs.BUILTIN_SIGNER for p in store.list_packs())
    ):
        raise fmt.ExportError("restore needs an empty vault: create a new one with `init`")
    for conv in doc.get("conversations", []):
        report = fmt.verify_chain(conv)
        if not report.intact:
            raise fmt.ExportError(f"refusing to restore: conversation {report.title!r} altered")
    new_keys = backup_keys(store, doc)
    keys = pack_library.trusted_keys(store)
    if new_keys and confirm_keys is not None and confirm_keys(dict(new_keys)):
        keys.update(new_keys)
    parsed = []
    for record in doc.get("packs", []):
        try:
            pack = packs.parse(str(record["source"]), name=f"pack {record.get('id')}")
        except (packs.PackError, KeyError, TypeError) as exc:
            raise fmt.ExportError(f"refusing to restore: {exc}") from None
        trust, signer = packs.verify(pack, keys)
        if pack.id in packs.builtin_ids() and trust is not packs.Trust.VERIFIED:
            continue  # the built-in this version ships stays
        parsed.append((pack, signer if trust is packs.Trust.VERIFIED else None))
    with store.transaction():  # everything or nothing
        new_ids: dict[str, str] = {}
        for conv in doc.get("conversations", []):
            new_ids[str(conv.get("id"))] = _add_conversation(store, conv, imported=False)
        entries = doc.get("documents") or []
        if not isinstance(entries, list):
            raise fmt.ExportError("refusing to restore: malformed documents")
        for entry in entries:
            if not isinstance(entry, dict):
                raise fmt.ExportError("refusing to restore: a document entry is malformed")
            doc_id = _restore_document(store, entry)
            for old in entry.get("conversations") or []:
                if str(old) in new_ids:
                    store.attach_document(new_ids[str(old)], doc_id)
        for pack, signer in parsed:
            pack_library.save(store, pack, signer)
        settings = doc.get("settings") or {}
        _merge_settings(
            store, {k: v for k, v in settings.items() if k != pack_library.TRUSTED_KEYS}
        )
        store.set_setting(pack_library.TRUSTED_KEYS, keys)
    return len(doc.get("conversations", []))


def _is_identity(text: str) -> bool:
    try:
        fmt.parse_identity(text)
    except fmt.ExportError:
        return False
    return True


def _is_signing_key(text: str) -> bool:
    try:
        return len(bytes.fromhex(text)) == 32
    except ValueError:
        return False


def _merge_settings(store: Store, incoming: dict[str, Any]) -> None:
    """Add a backup's settings to the vault's without replacing any (see restore_backup)."""
    own = store.all_settings()
    for key, value in incoming.items():
        if key in KEY_SETTINGS:
            continue
        if key not in own or own[key] is None:
            store.set_setting(key, value)
        elif isinstance(own[key], dict) and isinstance(value, dict):
            store.set_setting(key, {**value, **own[key]})
    ident = incoming.get(IDENTITY_KEY)
    if vault_identity(store) is None and isinstance(ident, str) and _is_identity(ident):
        store.set_setting(IDENTITY_KEY, ident)  # a new vault takes over the backup's key
    previous = incoming.get(PREVIOUS_IDENTITIES_KEY)
    for text in [ident, *(previous if isinstance(previous, list) else [])]:
        if isinstance(text, str) and _is_identity(text):
            _keep_identity(store, text)
    signing = incoming.get(SIGNING_KEY)
    if own.get(SIGNING_KEY) is None and isinstance(signing, str) and _is_signing_key(signing):
        store.set_setting(SIGNING_KEY, signing)
    elif isinstance(signing, str) and _is_signing_key(signing):
        public = crypto.signing_public_key(bytes.fromhex(signing))
        if crypto.key_fingerprint(public) != signing_identity(store).fingerprint:
            keys = trusted_export_keys(store)
            keys.setdefault(crypto.key_fingerprint(public), "restored backup")
            store.set_setting(TRUSTED_EXPORT_KEYS, keys)
    trusted = incoming.get(TRUSTED_EXPORT_KEYS)
    if isinstance(trusted, dict):
        keys = trusted_export_keys(store)
        for fp, name in trusted.items():
            if isinstance(fp, str) and isinstance(name, str):
                keys.setdefault(fp, name)
        store.set_setting(TRUSTED_EXPORT_KEYS, keys)
