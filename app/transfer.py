"""Export, verify, import, backup and restore: use cases over the store and storage.export."""

from __future__ import annotations

import base64
import binascii
import tomllib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bastion.app import pack_library, packs
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


def restore_backup(store: Store, doc: dict[str, Any]) -> int:
    """Restore a backup into an empty vault; returns the number of conversations.

    Raises:
        ExportError: not a backup, the vault is not empty, or the content was altered.
    """
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
        for record in doc.get("packs", []):
            try:
                pack = packs.parse(str(record["source"]), name=f"pack {record.get('id')}")
            except packs.PackError as exc:
                raise fmt.ExportError(f"refusing to restore: {exc}") from None
            pack_library.save(store, pack, record.get("signer"))
        for key, value in (doc.get("settings") or {}).items():
            store.set_setting(key, value)
    return len(doc.get("conversations", []))
