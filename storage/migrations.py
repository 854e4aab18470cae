"""Schema migrations, run in order by sqlite-utils ``Migrations``. Never edit an applied one."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("bastion")

# FTS5 tokenizer: accents folded so "cafe" finds "café".
_TOKENIZE = "unicode61 remove_diacritics 2"


def _secure_fts(db: Database, table: str) -> None:
    # With secure-delete, deleting a row removes its terms from the index b-tree itself,
    # instead of adding a delete marker that leaves the old terms until the next merge.
    db.execute(f"INSERT INTO [{table}]([{table}], rank) VALUES ('secure-delete', 1)")


@migrations()
def m001_initial(db: Database) -> None:
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("settings").create({"key": str, "value": str}, pk="key")
    db.table("conversations").create(
        {
            "id": str,
            "title": str,
            "created": str,
            "updated": str,
            "model_name": str,
            "model_sha256": str,
            "pack_id": str,
            "pack_version": str,
            "pinned": int,
            "imported": int,
            "head_id": str,
            "settings": str,
        },
        pk="id",
        not_null={"title", "created", "updated"},
        defaults={"pinned": 0, "imported": 0, "settings": "{}"},
    )
    db.table("messages").create(
        {
            "id": str,
            "conversation_id": str,
            "parent_id": str,
            "role": str,
            "content": str,
            "created": str,
            "pinned": int,
            "stats": str,
        },
        pk="id",
        not_null={"conversation_id", "role", "content", "created"},
        defaults={"pinned": 0},
        foreign_keys=[("conversation_id", "conversations", "id")],
    )
    db.table("messages").create_index(["conversation_id", "created"])
    db.table("messages").create_index(["parent_id"])
    db.table("conversations").create_index(["updated"])
    db.table("packs").create(
        {
            "id": str,
            "version": str,
            "name": str,
            "source": str,
            "signer": str,
            "imported": str,
        },
        pk="id",
        not_null={"version", "name", "source", "imported"},
    )
    db.table("messages").enable_fts(["content"], create_triggers=True, tokenize=_TOKENIZE)
    db.table("conversations").enable_fts(["title"], create_triggers=True, tokenize=_TOKENIZE)
    _secure_fts(db, "messages_fts")
    _secure_fts(db, "conversations_fts")
    db.table("meta").insert({"key": "counter", "value": "0"})


@migrations()
def m002_pack_chunks(db: Database) -> None:
    # Reference documents of packs, chunked and indexed for grounding answers.
    db.table("pack_chunks").create(
        {
            "id": int,
            "pack_id": str,
            "ref_id": str,
            "n": int,
            "title": str,
            "source": str,
            "text": str,
        },
        pk="id",
        not_null={"pack_id", "ref_id", "n", "title", "source", "text"},
    )
    db.table("pack_chunks").create_index(["pack_id", "ref_id", "n"], unique=True)
    # Porter stemming so "doses" finds "dose" (reference texts are prose, unlike chats).
    db.table("pack_chunks").enable_fts(
        ["title", "text"], create_triggers=True, tokenize=f"porter {_TOKENIZE}"
    )
    _secure_fts(db, "pack_chunks_fts")


@migrations()
def m003_audit(db: Database) -> None:
    # The audit log (storage.audit): ids and numbers only, each row MAC-chained to the one
    # before; triggers keep it append-only. No foreign keys: deleting a conversation keeps
    # the rows that name it.
    db.execute(
        "CREATE TABLE audit (id INTEGER PRIMARY KEY, at TEXT NOT NULL, event TEXT NOT NULL, "
        "data TEXT NOT NULL, mac TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX audit_at ON audit (at)")
    db.execute(
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
    )
    db.execute(
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
    )


@migrations()
def m004_documents(db: Database) -> None:
    # The user's documents: one row per distinct file (by SHA-256), the text of each page,
    # page-aware chunks with their heading, an FTS5 index of the chunks (secure delete), and
    # which conversations have which documents attached.
    db.table("documents").create(
        {
            "id": str,
            "sha256": str,
            "title": str,
            "kind": str,
            "paged": int,
            "pages": int,
            "empty_pages": int,
            "size": int,
            "added": str,
            "original": bytes,
        },
        pk="id",
        not_null={"sha256", "title", "kind", "paged", "pages", "size", "added"},
        defaults={"paged": 0, "empty_pages": 0},
    )
    db.table("documents").create_index(["sha256"], unique=True)
    db.table("document_pages").create(
        {"document_id": str, "page": int, "text": str},
        pk=("document_id", "page"),
        not_null={"document_id", "page", "text"},
        foreign_keys=[("document_id", "documents", "id")],
    )
    db.table("document_chunks").create(
        {
            "id": int,
            "document_id": str,
            "page": int,
            "n": int,
            "heading": str,
            "text": str,
        },
        pk="id",
        not_null={"document_id", "page", "n", "heading", "text"},
        foreign_keys=[("document_id", "documents", "id")],
    )
    db.table("document_chunks").create_index(["document_id", "n"], unique=True)
    db.table("document_chunks").enable_fts(
        ["heading", "text"], create_triggers=True, tokenize=f"porter {_TOKENIZE}"
    )
    _secure_fts(db, "document_chunks_fts")
    db.table("conversation_documents").create(
        {"conversation_id": str, "document_id": str, "added": str},
        pk=("conversation_id", "document_id"),
        not_null={"added"},
        foreign_keys=[
            ("conversation_id", "conversations", "id"),
            ("document_id", "documents", "id"),
        ],
    )
    db.table("conversation_documents").create_index(["document_id"])


@migrations()
def m005_kv_states(db: Database) -> None:
    # Evaluated KV states of packs' fixed prefixes, so the first pack conversation after a
    # restart does not prefill the system prompt and examples again. Inside the encrypted
    # vault like everything else; keyed by model, llama.cpp build and prefix tokens.
    db.table("kv_states").create(
        {
            "key": str,
            "model_sha256": str,
            "pack_id": str,
            "pack_version": str,
            "tokens": str,
            "state": bytes,
            "created": str,
        },
        pk="key",
        not_null={"model_sha256", "tokens", "state", "created"},
    )


def apply(db: Database) -> None:
    """Bring ``db`` to the current schema."""
    migrations.apply(db)
