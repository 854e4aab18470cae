"""The SQL of Bastion: conversations, messages, search, packs and settings.

``Store`` works on any SQLite connection; :mod:`storage.vault` gives it an encrypted
SQLCipher one (the benchmark also runs it on plain SQLite for comparison). Every public
method takes the store's lock, so thread workers may share one store.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from bastion.storage import migrations
from bastion.storage.schema import (
    Conversation,
    DocumentChunk,
    DocumentHit,
    DocumentPage,
    DocumentRecord,
    KvState,
    Message,
    MessageMeta,
    PackRecord,
    SearchHit,
    SourceChunk,
)

if TYPE_CHECKING:
    from bastion.storage.audit import AuditLog


def _meta(raw: str | None) -> MessageMeta:
    """A message's stored metadata; empty where the stored JSON is unreadable."""
    if not raw:
        return MessageMeta()
    try:
        return MessageMeta.read(json.loads(raw))
    except (ValueError, RecursionError):
        return MessageMeta()


def _meta_json(meta: MessageMeta | None) -> str | None:
    data = meta.stored() if meta is not None else None
    return json.dumps(data) if data else None


class StoreError(Exception):
    """A store operation failed; the message is one line for the user."""


class NotFoundError(StoreError):
    """No conversation, message or pack with that id."""


def now() -> datetime:
    return datetime.now(UTC)


def _ts(value: datetime | None = None) -> str:
    return (value or now()).astimezone(UTC).isoformat(timespec="microseconds")


def _new_id() -> str:
    return uuid.uuid4().hex


_TERM = re.compile(r"\w[\w'-]*\*?", re.UNICODE)


def fts_query(text: str) -> str:
    """Turn what the user typed into a safe FTS5 query: every word must match.

    Each word is quoted (so FTS5 operators and punctuation cannot cause a syntax error); a
    trailing ``*`` keeps its prefix meaning.
    """
    terms = []
    for term in _TERM.findall(text):
        prefix = term.endswith("*")
        word = term.rstrip("*").replace('"', '""')
        if word:
            terms.append(f'"{word}"' + ("*" if prefix else ""))
    return " ".join(terms)


class Store:
    """Conversations, messages, packs and settings in one SQLite database."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.db = Database(conn)
        self.lock = threading.RLock()
        self.audit: AuditLog | None = None
        """The audit log, set by the vault once it knows the key (None in memory stores)."""
        # sqlite3 and sqlcipher3 have distinct (but parallel) exception hierarchies.
        module = sys.modules[type(conn).__module__]
        self._db_error: type[Exception] = getattr(module, "Error", sqlite3.Error)
        with self.lock:
            migrations.apply(self.db)

    @contextmanager
    def _tx(self) -> Iterator[Database]:
        """A write transaction; a failed write is rolled back and reported in one line."""
        try:
            with self.lock, self.db.atomic():
                yield self.db
        except self._db_error as exc:
            text = str(exc)
            if "full" in text or "I/O" in text:
                raise StoreError(
                    "the disk is full or failing: the change was not saved (earlier data is intact)"
                ) from exc
            raise StoreError(f"the change was not saved: {text}") from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several store calls into one all-or-nothing transaction."""
        with self._tx():
            yield

    def _one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        cur = self.conn.execute(sql, params)
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def _all(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    # -- meta -----------------------------------------------------------------

    def counter(self) -> int:
        with self.lock:
            row = self._one("SELECT value FROM meta WHERE key = 'counter'")
            return int(row["value"]) if row else 0

    def set_counter(self, value: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE meta SET value = ? WHERE key = 'counter'", [str(value)])

    # -- conversations --------------------------------------------------------

    @staticmethod
    def _conversation(row: dict[str, Any]) -> Conversation:
        return Conversation(
            id=row["id"],
            title=row["title"],
            created=datetime.fromisoformat(row["created"]),
            updated=datetime.fromisoformat(row["updated"]),
            model_name=row["model_name"],
            model_sha256=row["model_sha256"],
            pack_id=row["pack_id"],
            pack_version=row["pack_version"],
            pinned=bool(row["pinned"]),
            imported=bool(row["imported"]),
            head_id=row["head_id"],
            settings=json.loads(row["settings"] or "{}"),
        )

    def create_conversation(
        self,
        title: str,
        *,
        model_name: str | None = None,
        model_sha256: str | None = None,
        pack_id: str | None = None,
        pack_version: str | None = None,
        settings: dict[str, Any] | None = None,
        imported: bool = False,
        created: datetime | None = None,
    ) -> Conversation:
        ts = _ts(created)
        row = {
            "id": _new_id(),
            "title": title,
            "created": ts,
            "updated": ts,
            "model_name": model_name,
            "model_sha256": model_sha256,
            "pack_id": pack_id,
            "pack_version": pack_version,
            "pinned": 0,
            "imported": int(imported),
            "head_id": None,
            "settings": json.dumps(settings or {}),
        }
        with self._tx() as db:
            db.table("conversations").insert(row)
        return self._conversation(row)

    def get_conversation(self, conversation_id: str) -> Conversation:
        with self.lock:
            row = self._one("SELECT * FROM conversations WHERE id = ?", [conversation_id])
        if row is None:
            raise NotFoundError(f"no conversation {conversation_id}")
        return self._conversation(row)

    def find_conversation(self, prefix: str) -> Conversation:
        """A conversation by id or unambiguous id prefix (at least 4 characters)."""
        if len(prefix) < 4:
            raise NotFoundError(f"no conversation {prefix} (give at least 4 characters)")
        with self.lock:
            rows = self._all(
                "SELECT * FROM conversations WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                [prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"],
            )
        if not rows:
            raise NotFoundError(f"no conversation {prefix}")
        if len(rows) > 1:
            raise NotFoundError(f"conversation id {prefix} is ambiguous; give more characters")
        return self._conversation(rows[0])

    def list_conversations(self, limit: int | None = None) -> list[Conversation]:
        """Pinned first, then the most recently updated."""
        sql = "SELECT * FROM conversations ORDER BY pinned DESC, updated DESC"
        params: list[Any] = []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self.lock:
            return [self._conversation(r) for r in self._all(sql, params)]

    def rename_conversation(self, conversation_id: str, title: str) -> None:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE conversations SET title = ?, updated = ? WHERE id = ?",
                [title, _ts(), conversation_id],
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"no conversation {conversation_id}")

    def set_pinned(self, conversation_id: str, pinned: bool) -> None:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE conversations SET pinned = ? WHERE id = ?", [int(pinned), conversation_id]
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"no conversation {conversation_id}")

    def update_conversation(self, conversation_id: str, **fields: Any) -> None:
        """Change the model, pack or settings recorded for a conversation."""
        allowed = {"model_name", "model_sha256", "pack_id", "pack_version", "settings"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update {sorted(bad)}")
        if "settings" in fields:
            fields["settings"] = json.dumps(fields["settings"] or {})
        with self._tx() as db:
            cols = ", ".join(f"{k} = ?" for k in fields)
            cur = db.execute(
                f"UPDATE conversations SET {cols} WHERE id = ?", [*fields.values(), conversation_id]
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"no conversation {conversation_id}")

    def delete_conversation(self, conversation_id: str) -> None:
        """Really delete: rows, their FTS entries (secure-delete), and their WAL copies."""
        with self._tx() as db:
            db.execute("DELETE FROM messages WHERE conversation_id = ?", [conversation_id])
            db.execute(
                "DELETE FROM conversation_documents WHERE conversation_id = ?", [conversation_id]
            )
            cur = db.execute("DELETE FROM conversations WHERE id = ?", [conversation_id])
            if cur.rowcount == 0:
                raise NotFoundError(f"no conversation {conversation_id}")
        self.purge()

    def delete_older_than(self, cutoff: datetime) -> int:
        """Delete conversations last updated before ``cutoff`` (retention); returns how many."""
        with self._tx() as db:
            ids = [
                r["id"]
                for r in self._all(
                    "SELECT id FROM conversations WHERE updated < ? AND pinned = 0", [_ts(cutoff)]
                )
            ]
            for cid in ids:
                db.execute("DELETE FROM messages WHERE conversation_id = ?", [cid])
                db.execute("DELETE FROM conversation_documents WHERE conversation_id = ?", [cid])
                db.execute("DELETE FROM conversations WHERE id = ?", [cid])
        if ids:
            self.purge()
        return len(ids)

    def purge(self) -> None:
        """Move everything from the WAL into the (securely deleted) database and empty the WAL.

        With ``secure_delete=ON`` freed pages are zeroed; the WAL still holds old page images
        until a checkpoint, so deleting is followed by a truncating checkpoint.
        """
        with self.lock:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # -- messages -------------------------------------------------------------

    @staticmethod
    def _message(row: dict[str, Any]) -> Message:
        return Message(
            id=row["id"],
            conversation_id=row["conversation_id"],
            parent_id=row["parent_id"],
            role=row["role"],
            content=row["content"],
            created=datetime.fromisoformat(row["created"]),
            pinned=bool(row["pinned"]),
            meta=_meta(row["stats"]),
        )

    def add_message(
        self,
        conversation_id: str,
        role: str,
        content: str,
        *,
        parent_id: str | None = "head",
        meta: MessageMeta | None = None,
        pinned: bool = False,
        created: datetime | None = None,
    ) -> Message:
        """Append a message. By default its parent is the conversation's head (the branch
        shown); pass another ``parent_id`` (or None for a root) to start a branch. The new
        message becomes the head."""
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"bad role {role!r}")
        with self._tx() as db:
            conv = self._one("SELECT head_id FROM conversations WHERE id = ?", [conversation_id])
            if conv is None:
                raise NotFoundError(f"no conversation {conversation_id}")
            if parent_id == "head":
                parent_id = conv["head_id"]
            ts = _ts(created)
            row = {
                "id": _new_id(),
                "conversation_id": conversation_id,
                "parent_id": parent_id,
                "role": role,
                "content": content,
                "created": ts,
                "pinned": int(pinned),
                "stats": _meta_json(meta),
            }
            db.table("messages").insert(row)
            db.execute(
                "UPDATE conversations SET head_id = ?, updated = ? WHERE id = ?",
                [row["id"], ts, conversation_id],
            )
        return self._message(row)

    def add_messages(
        self,
        conversation_id: str,
        items: list[tuple[str, str, datetime | None]],
    ) -> int:
        """Append many (role, content, created) messages as one chain in one transaction
        (imports). Returns how many were added."""
        with self._tx() as db:
            conv = self._one("SELECT head_id FROM conversations WHERE id = ?", [conversation_id])
            if conv is None:
                raise NotFoundError(f"no conversation {conversation_id}")
            parent = conv["head_id"]
            rows = []
            for role, content, created in items:
                if role not in ("system", "user", "assistant"):
                    raise ValueError(f"bad role {role!r}")
                row = {
                    "id": _new_id(),
                    "conversation_id": conversation_id,
                    "parent_id": parent,
                    "role": role,
                    "content": content,
                    "created": _ts(created),
                    "pinned": 0,
                    "stats": None,
                }
                rows.append(row)
                parent = row["id"]
            db.table("messages").insert_all(rows, batch_size=500)
            if rows:
                db.execute(
                    "UPDATE conversations SET head_id = ?, updated = ? WHERE id = ?",
                    [parent, rows[-1]["created"], conversation_id],
                )
        return len(rows)

    def get_message(self, message_id: str) -> Message:
        with self.lock:
            row = self._one("SELECT * FROM messages WHERE id = ?", [message_id])
        if row is None:
            raise NotFoundError(f"no message {message_id}")
        return self._message(row)

    def update_message(
        self,
        message_id: str,
        *,
        content: str | None = None,
        meta: MessageMeta | None = None,
        pinned: bool | None = None,
    ) -> None:
        sets: dict[str, Any] = {}
        if content is not None:
            sets["content"] = content
        if meta is not None:
            sets["stats"] = _meta_json(meta)
        if pinned is not None:
            sets["pinned"] = int(pinned)
        if not sets:
            return
        with self._tx() as db:
            cols = ", ".join(f"{k} = ?" for k in sets)
            cur = db.execute(
                f"UPDATE messages SET {cols} WHERE id = ?", [*sets.values(), message_id]
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"no message {message_id}")

    def delete_message(self, message_id: str) -> None:
        """Delete a message and every message below it (its replies and their branches)."""
        with self._tx() as db:
            msg = self._one(
                "SELECT conversation_id, parent_id FROM messages WHERE id = ?", [message_id]
            )
            if msg is None:
                raise NotFoundError(f"no message {message_id}")
            ids = [
                r["id"]
                for r in self._all(
                    "WITH RECURSIVE sub(id) AS (SELECT ? UNION ALL "
                    "SELECT m.id FROM messages m JOIN sub ON m.parent_id = sub.id) "
                    "SELECT id FROM sub",
                    [message_id],
                )
            ]
            db.execute(f"DELETE FROM messages WHERE id IN ({','.join('?' * len(ids))})", ids)
            head = self._one(
                "SELECT head_id FROM conversations WHERE id = ?", [msg["conversation_id"]]
            )
            if head and head["head_id"] in ids:
                new_head = self._latest_leaf(msg["parent_id"]) if msg["parent_id"] else None
                if new_head is None:
                    # The root was deleted: show the newest remaining branch, if any.
                    row = self._one(
                        "SELECT id FROM messages WHERE conversation_id = ? "
                        "ORDER BY created DESC LIMIT 1",
                        [msg["conversation_id"]],
                    )
                    new_head = self._latest_leaf(row["id"]) if row else None
                db.execute(
                    "UPDATE conversations SET head_id = ? WHERE id = ?",
                    [new_head, msg["conversation_id"]],
                )
        self.purge()

    def thread(self, conversation_id: str, head_id: str | None = None) -> list[Message]:
        """The messages of the branch ending at ``head_id`` (default: the shown one), in order."""
        with self.lock:
            if head_id is None:
                row = self._one("SELECT head_id FROM conversations WHERE id = ?", [conversation_id])
                if row is None:
                    raise NotFoundError(f"no conversation {conversation_id}")
                head_id = row["head_id"]
            if head_id is None:
                return []
            rows = self._all(
                "WITH RECURSIVE t(id, parent_id, depth) AS ("
                " SELECT id, parent_id, 0 FROM messages WHERE id = ? AND conversation_id = ?"
                " UNION ALL SELECT m.id, m.parent_id, t.depth + 1"
                " FROM messages m JOIN t ON m.id = t.parent_id)"
                " SELECT messages.* FROM t JOIN messages ON messages.id = t.id"
                " ORDER BY t.depth DESC",
                [head_id, conversation_id],
            )
        return [self._message(r) for r in rows]

    def all_messages(self, conversation_id: str) -> list[Message]:
        """Every message of a conversation, every branch, oldest first."""
        with self.lock:
            rows = self._all(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY created, rowid",
                [conversation_id],
            )
        return [self._message(r) for r in rows]

    def siblings(self, message_id: str) -> list[Message]:
        """The alternatives of a message (same parent), oldest first, itself included."""
        with self.lock:
            msg = self.get_message(message_id)
            rows = self._all(
                "SELECT * FROM messages WHERE conversation_id = ? AND parent_id IS ? "
                "ORDER BY created, rowid",
                [msg.conversation_id, msg.parent_id],
            )
        return [self._message(r) for r in rows]

    def _latest_leaf(self, message_id: str) -> str | None:
        row = self._one(
            "WITH RECURSIVE sub(id, created) AS (SELECT id, created FROM messages WHERE id = ?"
            " UNION ALL SELECT m.id, m.created FROM messages m JOIN sub ON m.parent_id = sub.id)"
            " SELECT id FROM sub ORDER BY created DESC LIMIT 1",
            [message_id],
        )
        return row["id"] if row else None

    def select_branch(self, message_id: str) -> list[Message]:
        """Show the branch through ``message_id`` (its newest continuation); returns it."""
        with self._tx() as db:
            msg = self.get_message(message_id)
            head = self._latest_leaf(message_id)
            db.execute(
                "UPDATE conversations SET head_id = ? WHERE id = ?", [head, msg.conversation_id]
            )
        return self.thread(msg.conversation_id)

    # -- search ---------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        conversation_id: str | None = None,
        pack_id: str | None = None,
        role: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[SearchHit]:
        """Ranked full-text search over messages and titles, with snippets.

        Snippets mark matches with ``[`` and ``]``. The query is never stored.
        """
        match = fts_query(query)
        if not match:
            return []
        # Filters become a rowid set inside the FTS query, so that ranking, LIMIT and the
        # (costly) snippet work on the few best hits instead of on every match.
        where: list[str] = []
        params: list[Any] = []
        conv_where: list[str] = []
        conv_params: list[Any] = []
        if conversation_id:
            where.append("m.conversation_id = ?")
            params.append(conversation_id)
            conv_where.append("c.id = ?")
            conv_params.append(conversation_id)
        if pack_id:
            where.append("c.pack_id = ?")
            params.append(pack_id)
            conv_where.append("c.pack_id = ?")
            conv_params.append(pack_id)
        if role:
            where.append("m.role = ?")
            params.append(role)
        if since:
            where.append("m.created >= ?")
            params.append(_ts(since))
            conv_where.append("c.updated >= ?")
            conv_params.append(_ts(since))
        if until:
            where.append("m.created < ?")
            params.append(_ts(until))
            conv_where.append("c.created < ?")
            conv_params.append(_ts(until))
        # Stage 1 ranks (bm25) and filters; stage 2 makes snippets for the few kept hits
        # only. With no filter the LIMIT applies inside the FTS query itself. (A rowid-IN
        # subquery inside the MATCH query is evaluated per row: far slower.)
        inner_limit = "" if where else " ORDER BY score LIMIT ?"
        sql = (
            "WITH hits AS MATERIALIZED (SELECT rowid AS rid, bm25(messages_fts) AS score"
            f" FROM messages_fts WHERE messages_fts MATCH ?{inner_limit})"
            " SELECT m.rowid AS rid, m.id AS message_id, m.conversation_id, c.title, m.role,"
            " m.created, hits.score AS rank"
            " FROM hits JOIN messages m ON m.rowid = hits.rid"
            " JOIN conversations c ON c.id = m.conversation_id"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY hits.score LIMIT ?"
        )
        params = [match, *([limit] if not where else []), *params, limit]
        title_sql = (
            "WITH hits AS MATERIALIZED (SELECT rowid AS rid, bm25(conversations_fts) AS score,"
            " highlight(conversations_fts, 0, '[', ']') AS snippet"
            " FROM conversations_fts WHERE conversations_fts MATCH ?)"
            " SELECT c.id, c.title, c.updated, hits.score AS rank, hits.snippet"
            " FROM hits JOIN conversations c ON c.rowid = hits.rid"
            + (f" WHERE {' AND '.join(conv_where)}" if conv_where else "")
            + " ORDER BY hits.score LIMIT ?"
        )
        hits: list[SearchHit] = []
        with self.lock:
            try:
                rows = self._all(sql, params)
                snippets: dict[int, str] = {}
                if rows:
                    rids = [r["rid"] for r in rows]
                    for rid, snip in self.conn.execute(
                        "SELECT rowid, snippet(messages_fts, 0, '[', ']', '…', 12)"
                        " FROM messages_fts WHERE messages_fts MATCH ?"
                        f" AND rowid IN ({','.join('?' * len(rids))})",
                        [match, *rids],
                    ):
                        snippets[rid] = snip
                title_rows = [] if role else self._all(title_sql, [match, *conv_params, limit])
            except self._db_error as exc:
                raise StoreError(f"search failed: {exc}") from exc
        for r in title_rows:
            hits.append(
                SearchHit(
                    conversation_id=r["id"],
                    conversation_title=r["title"],
                    message_id=None,
                    role=None,
                    snippet=r["snippet"],
                    created=datetime.fromisoformat(r["updated"]),
                    rank=r["rank"],
                )
            )
        for r in rows:
            hits.append(
                SearchHit(
                    conversation_id=r["conversation_id"],
                    conversation_title=r["title"],
                    message_id=r["message_id"],
                    role=r["role"],
                    snippet=snippets.get(r["rid"], ""),
                    created=datetime.fromisoformat(r["created"]),
                    rank=r["rank"],
                )
            )
        hits.sort(key=lambda h: h.rank)  # bm25: lower is better
        return hits[:limit]

    # -- packs ----------------------------------------------------------------

    def save_pack(
        self,
        pack_id: str,
        version: str,
        name: str,
        source: str,
        signer: str | None,
        chunks: Sequence[SourceChunk] = (),
    ) -> None:
        """Install or replace a pack and its reference chunks, all or nothing."""
        with self._tx() as db:
            db.table("packs").upsert(
                {
                    "id": pack_id,
                    "version": version,
                    "name": name,
                    "source": source,
                    "signer": signer,
                    "imported": _ts(),
                },
                pk="id",
            )
            db.execute("DELETE FROM pack_chunks WHERE pack_id = ?", [pack_id])
            db.table("pack_chunks").insert_all(
                {
                    "pack_id": pack_id,
                    "ref_id": c.ref_id,
                    "n": c.n,
                    "title": c.title,
                    "source": c.source,
                    "text": c.text,
                }
                for c in chunks
            )

    def pack_sources(self, pack_id: str, terms: Sequence[str], limit: int = 3) -> list[SourceChunk]:
        """The chunks of a pack's references that best match any of ``terms`` (bm25)."""
        words = [t.replace('"', '""') for t in terms if t.strip()]
        if not words:
            return []
        query = " OR ".join(f'"{w}"' for w in words)
        with self.lock:
            try:
                rows = self._all(
                    "SELECT c.*, bm25(pack_chunks_fts, 2.0, 1.0) AS rank FROM pack_chunks_fts"
                    " JOIN pack_chunks c ON c.id = pack_chunks_fts.rowid"
                    " WHERE pack_chunks_fts MATCH ? AND c.pack_id = ?"
                    " ORDER BY rank LIMIT ?",
                    [query, pack_id, limit],
                )
            except self._db_error as exc:
                raise StoreError(f"reference search failed: {exc}") from exc
        return [SourceChunk(**{k: v for k, v in r.items() if k != "id"}) for r in rows]

    def pack_chunk_count(self, pack_id: str) -> int:
        with self.lock:
            row = self._one("SELECT count(*) AS n FROM pack_chunks WHERE pack_id = ?", [pack_id])
        return int(row["n"]) if row else 0

    def get_pack(self, pack_id: str) -> PackRecord:
        with self.lock:
            row = self._one("SELECT * FROM packs WHERE id = ?", [pack_id])
        if row is None:
            raise NotFoundError(f"no pack {pack_id}")
        return PackRecord(**{**row, "imported": datetime.fromisoformat(row["imported"])})

    def list_packs(self) -> list[PackRecord]:
        with self.lock:
            rows = self._all("SELECT * FROM packs ORDER BY id")
        return [
            PackRecord(**{**r, "imported": datetime.fromisoformat(r["imported"])}) for r in rows
        ]

    def remove_pack(self, pack_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM pack_chunks WHERE pack_id = ?", [pack_id])
            db.execute("DELETE FROM kv_states WHERE pack_id = ?", [pack_id])
            cur = db.execute("DELETE FROM packs WHERE id = ?", [pack_id])
            if cur.rowcount == 0:
                raise NotFoundError(f"no pack {pack_id}")
        self.purge()

    # -- saved KV states --------------------------------------------------------

    MAX_KV_STATES = 4
    """Saved prefix states kept (the oldest beyond this are deleted)."""

    def save_kv_state(self, state: KvState) -> None:
        """Keep ``state`` (replacing one with the same key); at most :attr:`MAX_KV_STATES`."""
        with self._tx() as db:
            db.table("kv_states").upsert(
                {
                    "key": state.key,
                    "model_sha256": state.model_sha256,
                    "pack_id": state.pack_id,
                    "pack_version": state.pack_version,
                    "tokens": json.dumps(state.tokens),
                    "state": state.state,
                    "created": _ts(state.created),
                },
                pk="key",
            )
            db.execute(
                "DELETE FROM kv_states WHERE key NOT IN "
                "(SELECT key FROM kv_states ORDER BY created DESC LIMIT ?)",
                [self.MAX_KV_STATES],
            )

    def get_kv_state(self, key: str) -> KvState | None:
        with self.lock:
            row = self._one("SELECT * FROM kv_states WHERE key = ?", [key])
        if row is None:
            return None
        try:
            tokens = [int(t) for t in json.loads(row["tokens"])]
        except (ValueError, TypeError):
            return None
        return KvState(
            **{**row, "tokens": tokens, "created": datetime.fromisoformat(row["created"])}
        )

    def delete_kv_states(self, pack_id: str | None = None) -> None:
        """Forget saved states (of one pack, or all)."""
        with self._tx() as db:
            if pack_id is None:
                db.execute("DELETE FROM kv_states")
            else:
                db.execute("DELETE FROM kv_states WHERE pack_id = ?", [pack_id])

    # -- documents ------------------------------------------------------------

    @staticmethod
    def _document(row: dict[str, Any]) -> DocumentRecord:
        return DocumentRecord(
            id=row["id"],
            sha256=row["sha256"],
            title=row["title"],
            kind=row["kind"],
            paged=bool(row["paged"]),
            pages=row["pages"],
            empty_pages=row["empty_pages"] or 0,
            size=row["size"],
            added=datetime.fromisoformat(row["added"]),
            has_original=bool(row["has_original"]),
        )

    _DOC_COLUMNS = (
        "id, sha256, title, kind, paged, pages, empty_pages, size, added,"
        " original IS NOT NULL AS has_original"
    )

    def add_document(
        self,
        *,
        sha256: str,
        title: str,
        kind: str,
        paged: bool,
        pages: Sequence[str],
        chunks: Sequence[tuple[int, str, str]],
        size: int,
        empty_pages: int = 0,
        original: bytes | None = None,
        added: datetime | None = None,
    ) -> tuple[DocumentRecord, bool]:
        """Store a document, its pages (text per 1-based page) and its chunks ``(page,
        heading, text)``, all or nothing. Deduplicated by ``sha256``: a file already in the
        vault is not stored twice. Returns the record and whether it was new."""
        with self._tx() as db:
            row = self._one(f"SELECT {self._DOC_COLUMNS} FROM documents WHERE sha256 = ?", [sha256])
            if row is not None:
                if original is not None and not row["has_original"]:
                    db.execute(
                        "UPDATE documents SET original = ? WHERE id = ?", [original, row["id"]]
                    )
                    row["has_original"] = 1
                return self._document(row), False
            doc_id = _new_id()
            record = {
                "id": doc_id,
                "sha256": sha256,
                "title": title,
                "kind": kind,
                "paged": int(paged),
                "pages": len(pages),
                "empty_pages": empty_pages,
                "size": size,
                "added": _ts(added),
                "original": original,
            }
            db.table("documents").insert(record)
            self.conn.executemany(
                "INSERT INTO document_pages (document_id, page, text) VALUES (?, ?, ?)",
                [(doc_id, i + 1, text) for i, text in enumerate(pages)],
            )
            self.conn.executemany(
                "INSERT INTO document_chunks (document_id, page, n, heading, text)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (doc_id, page, n, heading, text)
                    for n, (page, heading, text) in enumerate(chunks)
                ],
            )
        record["has_original"] = original is not None
        return self._document(record), True

    def get_document(self, document_id: str) -> DocumentRecord:
        with self.lock:
            row = self._one(
                f"SELECT {self._DOC_COLUMNS} FROM documents WHERE id = ?", [document_id]
            )
        if row is None:
            raise NotFoundError(f"no document {document_id}")
        return self._document(row)

    def find_document(self, prefix: str) -> DocumentRecord:
        """A document by id or unambiguous id prefix (at least 4 characters)."""
        if len(prefix) < 4 or not re.fullmatch(r"[0-9a-f]+", prefix):
            raise NotFoundError(f"no document {prefix} (give at least 4 characters of its id)")
        with self.lock:
            rows = self._all(
                f"SELECT {self._DOC_COLUMNS} FROM documents WHERE id LIKE ? LIMIT 2",
                [prefix + "%"],
            )
        if not rows:
            raise NotFoundError(f"no document {prefix}")
        if len(rows) > 1:
            raise NotFoundError(f"document id {prefix} is ambiguous; give more characters")
        return self._document(rows[0])

    def document_by_sha256(self, sha256: str) -> DocumentRecord | None:
        with self.lock:
            row = self._one(f"SELECT {self._DOC_COLUMNS} FROM documents WHERE sha256 = ?", [sha256])
        return self._document(row) if row else None

    def list_documents(self) -> list[DocumentRecord]:
        """Every document, newest first."""
        with self.lock:
            rows = self._all(f"SELECT {self._DOC_COLUMNS} FROM documents ORDER BY added DESC")
        return [self._document(r) for r in rows]

    def document_pages(
        self, document_id: str, first: int = 1, last: int | None = None
    ) -> list[DocumentPage]:
        """The text of pages ``first``..``last`` (default: to the end) of a document."""
        with self.lock:
            rows = self._all(
                "SELECT document_id, page, text FROM document_pages"
                " WHERE document_id = ? AND page >= ? AND page <= ? ORDER BY page",
                [document_id, first, last if last is not None else 1 << 30],
            )
        return [DocumentPage(**r) for r in rows]

    def document_original(self, document_id: str) -> bytes | None:
        """The original file's bytes, if the user kept them."""
        with self.lock:
            row = self._one("SELECT original FROM documents WHERE id = ?", [document_id])
        if row is None:
            raise NotFoundError(f"no document {document_id}")
        return bytes(row["original"]) if row["original"] is not None else None

    def document_sources(
        self, document_ids: Sequence[str], terms: Sequence[str], limit: int = 3
    ) -> list[DocumentChunk]:
        """The chunks of some documents that best match any of ``terms`` (bm25, headings
        weighted double)."""
        words = [t.replace('"', '""') for t in terms if t.strip()]
        if not words or not document_ids:
            return []
        query = " OR ".join(f'"{w}"' for w in words)
        marks = ",".join("?" * len(document_ids))
        with self.lock:
            try:
                rows = self._all(
                    "SELECT c.document_id, c.page, c.n, c.heading, c.text, d.title, d.sha256,"
                    " d.paged, bm25(document_chunks_fts, 2.0, 1.0) AS rank"
                    " FROM document_chunks_fts JOIN document_chunks c"
                    " ON c.id = document_chunks_fts.rowid JOIN documents d ON d.id = c.document_id"
                    f" WHERE document_chunks_fts MATCH ? AND c.document_id IN ({marks})"
                    " ORDER BY rank LIMIT ?",
                    [query, *document_ids, limit],
                )
            except self._db_error as exc:
                raise StoreError(f"document search failed: {exc}") from exc
        return [DocumentChunk(**{**r, "paged": bool(r["paged"])}) for r in rows]

    def document_chunks(self, document_id: str) -> list[DocumentChunk]:
        """Every chunk of a document, in order."""
        with self.lock:
            rows = self._all(
                "SELECT c.document_id, c.page, c.n, c.heading, c.text, d.title, d.sha256, d.paged"
                " FROM document_chunks c JOIN documents d ON d.id = c.document_id"
                " WHERE c.document_id = ? ORDER BY c.n",
                [document_id],
            )
        return [DocumentChunk(**{**r, "paged": bool(r["paged"])}) for r in rows]

    def search_documents(
        self, query: str, *, document_ids: Sequence[str] | None = None, limit: int = 20
    ) -> list[DocumentHit]:
        """Ranked full-text search over every document (or some), every word must match;
        snippets mark matches with ``[`` and ``]``. The query is never stored."""
        match = fts_query(query)
        if not match:
            return []
        where = ""
        params: list[Any] = [match]
        if document_ids is not None:
            where = f" AND c.document_id IN ({','.join('?' * len(document_ids))})"
            params += list(document_ids)
        # Rank inside the FTS query first (cheap), snippets for the kept hits only.
        sql = (
            "WITH hits AS MATERIALIZED (SELECT rowid AS rid, bm25(document_chunks_fts, 2.0, 1.0)"
            " AS score FROM document_chunks_fts WHERE document_chunks_fts MATCH ?"
            + ("" if where else " ORDER BY score LIMIT ?")
            + ") SELECT c.id AS rid, c.document_id, c.page, c.heading, d.title, d.paged,"
            " hits.score AS rank FROM hits JOIN document_chunks c ON c.id = hits.rid"
            " JOIN documents d ON d.id = c.document_id"
            f" WHERE 1{where} ORDER BY hits.score LIMIT ?"
        )
        if not where:
            params.append(limit)
        params.append(limit)
        with self.lock:
            try:
                rows = self._all(sql, params)
                snippets: dict[int, str] = {}
                if rows:
                    rids = [r["rid"] for r in rows]
                    for rid, snip in self.conn.execute(
                        "SELECT rowid, snippet(document_chunks_fts, 1, '[', ']', '…', 14)"
                        " FROM document_chunks_fts WHERE document_chunks_fts MATCH ?"
                        f" AND rowid IN ({','.join('?' * len(rids))})",
                        [match, *rids],
                    ):
                        snippets[rid] = snip
            except self._db_error as exc:
                raise StoreError(f"search failed: {exc}") from exc
        return [
            DocumentHit(
                document_id=r["document_id"],
                title=r["title"],
                page=r["page"],
                paged=bool(r["paged"]),
                heading=r["heading"],
                snippet=snippets.get(r["rid"], ""),
                rank=r["rank"],
            )
            for r in rows
        ]

    def remove_document(self, document_id: str) -> None:
        """Really delete a document: its row and original, pages, chunks, index entries
        (secure-delete), attachments, and the WAL's copies of them."""
        with self._tx() as db:
            db.execute("DELETE FROM document_chunks WHERE document_id = ?", [document_id])
            db.execute("DELETE FROM document_pages WHERE document_id = ?", [document_id])
            db.execute("DELETE FROM conversation_documents WHERE document_id = ?", [document_id])
            cur = db.execute("DELETE FROM documents WHERE id = ?", [document_id])
            if cur.rowcount == 0:
                raise NotFoundError(f"no document {document_id}")
        self.purge()

    def attach_document(self, conversation_id: str, document_id: str) -> None:
        """Attach a document to a conversation (its turns are grounded on it)."""
        with self._tx() as db:
            if self._one("SELECT id FROM documents WHERE id = ?", [document_id]) is None:
                raise NotFoundError(f"no document {document_id}")
            if self._one("SELECT id FROM conversations WHERE id = ?", [conversation_id]) is None:
                raise NotFoundError(f"no conversation {conversation_id}")
            db.execute(
                "INSERT OR IGNORE INTO conversation_documents (conversation_id, document_id,"
                " added) VALUES (?, ?, ?)",
                [conversation_id, document_id, _ts()],
            )

    def detach_document(self, conversation_id: str, document_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "DELETE FROM conversation_documents WHERE conversation_id = ? AND document_id = ?",
                [conversation_id, document_id],
            )

    def conversation_documents(self, conversation_id: str) -> list[DocumentRecord]:
        """The documents attached to a conversation, in the order they were attached."""
        with self.lock:
            rows = self._all(
                f"SELECT {', '.join('d.' + c.strip() for c in self._DOC_COLUMNS.split(','))}"
                " FROM conversation_documents l JOIN documents d ON d.id = l.document_id"
                " WHERE l.conversation_id = ? ORDER BY l.added, d.id",
                [conversation_id],
            )
        return [self._document(r) for r in rows]

    # -- settings -------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        with self.lock:
            row = self._one("SELECT value FROM settings WHERE key = ?", [key])
        return json.loads(row["value"]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        with self._tx() as db:
            db.table("settings").upsert({"key": key, "value": json.dumps(value)}, pk="key")

    def all_settings(self) -> dict[str, Any]:
        with self.lock:
            return {r["key"]: json.loads(r["value"]) for r in self._all("SELECT * FROM settings")}
