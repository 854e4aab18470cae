"""Export, verify, import, backup and restore: use cases over the store and storage.export."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bastion.app import audit, pack_library, packs
from bastion.storage import export as fmt
from bastion.storage.schema import Conversation, Message, MessageMeta
from bastion.storage.store import NotFoundError, Store

IDENTITY_KEY = "age_identity"


def vault_identity(store: Store) -> Any | None:
    """The vault's own age identity (kept inside the encrypted vault), if it has one."""
    text = store.get_setting(IDENTITY_KEY)
    return fmt.parse_identity(text) if text else None


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
    store: Store, event: str, data: bytes, new_ids: list[str], header: fmt.AgeHeader
) -> None:
    """Audit an import or a restore: the file's SHA-256 (its origin), how it was encrypted,
    and its authenticity (every conversation's hash chain was verified before it was
    added; an altered one is refused, so nothing unverified is recorded as imported)."""
    audit.record(
        store,
        event,
        origin_sha256=audit.file_sha256(data),
        encryption="passphrase" if "scrypt" in header.kinds else "recipient",
        authenticity="hash-chain-verified",
        conversations=new_ids,
    )


def _message_dict(m: Message, redaction: fmt.Redaction | None) -> dict[str, Any]:
    content = redaction.apply(m.content) if redaction else m.content
    stats = m.meta.stored() or {}
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
    return {
        "id": conv.id,
        "title": redaction.apply(conv.title) if redaction else conv.title,
        "created": conv.created.isoformat(),
        "updated": conv.updated.isoformat(),
        "model": {"name": conv.model_name, "sha256": conv.model_sha256},
        "pack": {"id": conv.pack_id, "version": conv.pack_version, "disclaimer": disclaimer},
        "settings": conv.settings,
        "pinned": conv.pinned,
        "head_id": conv.head_id,
        "messages": [_message_dict(m, redaction) for m in store.all_messages(conv.id)],
    }


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
    return doc, redaction


def render(doc: dict[str, Any], form: str) -> bytes:
    if form == "json":
        import json

        return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")
    return fmt.render_markdown(doc).encode("utf-8")


@dataclass
class Verification:
    """What `verify` found: the document and one chain report per conversation."""

    document: dict[str, Any]
    reports: list[fmt.ChainReport]

    @property
    def intact(self) -> bool:
        return all(r.intact for r in self.reports)


def verify(plaintext: bytes) -> Verification:
    doc = fmt.parse_document(plaintext)
    convs = doc.get("conversations", [])
    return Verification(doc, [fmt.verify_chain(c) for c in convs])


def import_conversations(store: Store, doc: dict[str, Any]) -> list[str]:
    """Add the document's conversations as new ones (never overwriting), marked imported.

    Raises:
        ExportError: the document's hash chain is broken (altered content is not imported).
    """
    reports = [fmt.verify_chain(c) for c in doc.get("conversations", [])]
    broken = [r for r in reports if not r.intact]
    if broken:
        raise fmt.ExportError(
            f"refusing to import: conversation {broken[0].title!r} was altered "
            f"(first at message {(broken[0].first_altered or 0) + 1})"
        )
    new_ids = []
    with store.transaction():  # all conversations or none
        for conv in doc.get("conversations", []):
            new_ids.append(_add_conversation(store, conv, imported=True))
    return new_ids


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
            pinned=bool(m.get("pinned")),
            created=datetime.fromisoformat(m["created"]),
        )
        ids[m["id"]] = saved.id
        if m["id"] == conv.get("head_id"):
            head = saved.id
    if head is not None:
        store.select_branch(head)
    if conv.get("pinned"):
        store.set_pinned(new.id, True)
    return new.id


def build_backup(store: Store) -> dict[str, Any]:
    """Everything in the vault: conversations (all branches), packs and settings."""
    doc = fmt.transcript_document([conversation_dict(store, c) for c in store.list_conversations()])
    doc["format"] = fmt.BACKUP_FORMAT
    doc["packs"] = [p.model_dump(mode="json") for p in store.list_packs()]
    doc["settings"] = store.all_settings()
    return doc


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
    doc: dict[str, Any],
    confirm_keys: Callable[[dict[str, str]], bool] | None = None,
) -> int:
    """Restore a backup into an empty vault; returns the number of conversations.

    Packs are restored as imports: never as built-ins (the built-ins are the ones this
    version ships), and under a built-in's id only when signed by a trusted key. The
    backup's trusted pack-signing keys are added only if ``confirm_keys`` (shown them)
    returns true; without it, none are.

    Raises:
        ExportError: not a backup, the vault is not empty, or the content was altered.
    """
    if doc.get("format") != fmt.BACKUP_FORMAT:
        raise fmt.ExportError("not a Bastion backup (use `bastion import` for transcripts)")
    if store.list_conversations() or any(
        p.signer != packs.BUILTIN_SIGNER for p in store.list_packs()
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
        for conv in doc.get("conversations", []):
            _add_conversation(store, conv, imported=False)
        for pack, signer in parsed:
            pack_library.save(store, pack, signer)
        for key, value in (doc.get("settings") or {}).items():
            if key != pack_library.TRUSTED_KEYS:
                store.set_setting(key, value)
        store.set_setting(pack_library.TRUSTED_KEYS, keys)
    return len(doc.get("conversations", []))
