"""The store's SQL on an unencrypted in-memory database: migrations, branches, search.

sqlcipher3 without a key is plain SQLite (3.53, the same engine the vault uses); the
system's sqlite3 may be too old for FTS5 secure-delete.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlcipher3
from sqlite_utils import Database

from bastion.storage import migrations
from bastion.storage.store import NotFoundError, Store, StoreError, fts_query


@pytest.fixture
def store() -> Store:
    return Store(sqlcipher3.connect(":memory:", check_same_thread=False, isolation_level=None))


def test_migrate_blank_database() -> None:
    """A blank database gets every table, FTS index and the counter; reapplying is a no-op."""
    db = Database(sqlcipher3.connect(":memory:", isolation_level=None))
    migrations.apply(db)
    names = set(db.table_names())
    assert {"conversations", "messages", "packs", "settings", "meta"} <= names
    assert {"messages_fts", "conversations_fts", "pack_chunks", "pack_chunks_fts"} <= names
    applied = [m.name for m in migrations.migrations.applied(db)]
    assert applied == [
        "m001_initial",
        "m002_pack_chunks",
        "m003_audit",
        "m004_documents",
        "m005_kv_states",
    ]
    assert "audit" in names
    migrations.apply(db)
    assert [m.name for m in migrations.migrations.applied(db)] == applied
    assert db.execute("SELECT value FROM meta WHERE key='counter'").fetchone()[0] == "0"


def test_thread_and_branches(store: Store) -> None:
    """Regenerating and editing make branches; the shown branch can be switched."""
    c = store.create_conversation("t")
    q = store.add_message(c.id, "user", "q1")
    a1 = store.add_message(c.id, "assistant", "a1")
    # regenerate: a sibling of a1
    a2 = store.add_message(c.id, "assistant", "a2", parent_id=q.id)
    assert [m.content for m in store.thread(c.id)] == ["q1", "a2"]
    assert [m.id for m in store.siblings(a1.id)] == [a1.id, a2.id]
    store.select_branch(a1.id)
    assert [m.content for m in store.thread(c.id)] == ["q1", "a1"]
    # edit the question: a new root branch
    q2 = store.add_message(c.id, "user", "q1 edited", parent_id=None)
    assert [m.content for m in store.thread(c.id)] == ["q1 edited"]
    assert {m.id for m in store.siblings(q.id)} == {q.id, q2.id}
    store.select_branch(q.id)  # newest continuation under q: a2
    assert [m.content for m in store.thread(c.id)] == ["q1", "a2"]
    assert len(store.all_messages(c.id)) == 4


def test_delete_message_removes_subtree(store: Store) -> None:
    """Deleting a message deletes its replies; the head moves to a surviving branch."""
    c = store.create_conversation("t")
    q = store.add_message(c.id, "user", "q")
    a = store.add_message(c.id, "assistant", "a")
    store.add_message(c.id, "user", "q2")
    store.delete_message(a.id)
    assert [m.content for m in store.thread(c.id)] == ["q"]
    store.delete_message(q.id)
    assert store.thread(c.id) == []
    with pytest.raises(NotFoundError):
        store.get_message(a.id)


def test_search_ranked_with_filters(store: Store) -> None:
    """Search ranks, highlights, and filters by conversation, pack, role and date."""
    old = datetime.now(UTC) - timedelta(days=30)
    c1 = store.create_conversation("Kidney questions", pack_id="medical")
    c2 = store.create_conversation("Lease dispute", pack_id="legal")
    store.add_message(c1.id, "user", "What does a kidney do?", created=old)
    store.add_message(c1.id, "assistant", "The kidney filters blood; kidney health matters.")
    store.add_message(c2.id, "user", "My landlord kept the deposit.")
    hits = store.search("kidney")
    assert hits[0].conversation_id == c1.id
    assert all("[kidney]" in h.snippet.lower() for h in hits)
    assert {h.message_id is None for h in hits} == {True, False}  # title and messages
    assert [h.role for h in store.search("kidney", role="assistant")] == ["assistant"]
    assert store.search("kidney", pack_id="legal") == []
    assert store.search("deposit", conversation_id=c1.id) == []
    assert len(store.search("deposit", conversation_id=c2.id)) == 1
    recent = store.search("kidney", since=datetime.now(UTC) - timedelta(days=1), role="user")
    assert recent == []
    assert store.search("kidn*")  # prefix search


@pytest.mark.parametrize("query", ['"', "AND", "(", "a OR", "NEAR(", "*", "-x", "col:x", "'"])
def test_search_never_raises_on_syntax(store: Store, query: str) -> None:
    """Whatever the user types, search returns results or nothing, never an FTS error."""
    c = store.create_conversation("t")
    store.add_message(c.id, "user", "x AND y")
    assert isinstance(store.search(query), list)


def test_fts_query_quotes_terms() -> None:
    """Terms are quoted; a trailing star stays a prefix match."""
    assert fts_query('foo "bar" baz*') == '"foo" "bar" "baz"*'
    assert fts_query("  ") == ""


def test_retention_deletes_old_unpinned(store: Store) -> None:
    """Retention deletes conversations older than the cutoff, except pinned ones."""
    old = datetime.now(UTC) - timedelta(days=40)
    a = store.create_conversation("old", created=old)
    b = store.create_conversation("old pinned", created=old)
    store.set_pinned(b.id, True)
    store.create_conversation("new")
    assert store.delete_older_than(datetime.now(UTC) - timedelta(days=30)) == 1
    assert {c.title for c in store.list_conversations()} == {"old pinned", "new"}
    with pytest.raises(NotFoundError):
        store.get_conversation(a.id)


def test_list_order_rename_pin(store: Store) -> None:
    """Pinned first, then newest; rename and pin persist; unknown ids raise NotFoundError."""
    a = store.create_conversation("a")
    b = store.create_conversation("b")
    store.add_message(a.id, "user", "newer")
    assert [c.title for c in store.list_conversations()] == ["a", "b"]
    store.set_pinned(b.id, True)
    store.rename_conversation(a.id, "A!")
    assert [c.title for c in store.list_conversations()] == ["b", "A!"]
    assert store.find_conversation(a.id[:8]).id == a.id
    with pytest.raises(NotFoundError):
        store.rename_conversation("nope", "x")
    with pytest.raises(NotFoundError):
        store.find_conversation("abc")


def test_settings_and_packs(store: Store) -> None:
    """Settings keep JSON values; packs upsert by id."""
    store.set_setting("theme", {"name": "dark"})
    assert store.get_setting("theme") == {"name": "dark"}
    assert store.get_setting("missing", 5) == 5
    store.save_pack("med", "1.0.0", "Medical", "x", None)
    store.save_pack("med", "1.1.0", "Medical", "y", "key1")
    (p,) = store.list_packs()
    assert (p.version, p.source, p.signer) == ("1.1.0", "y", "key1")
    store.remove_pack("med")
    with pytest.raises(NotFoundError):
        store.get_pack("med")


def test_failed_write_is_store_error(store: Store) -> None:
    """A database error during a write is a StoreError and leaves nothing half-written."""
    c = store.create_conversation("t")
    store.conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'nope'); END"
    )
    with pytest.raises(StoreError, match="not saved"):
        store.add_message(c.id, "user", "x")
    assert store.get_conversation(c.id).head_id is None


def test_message_meta_reads_what_0_1_stored(store: Store) -> None:
    """The flat statistics object 0.1 wrote in the `stats` column reads into the typed
    MessageMeta; unknown keys are ignored; a value of the wrong shape (imported, edited) reads
    as empty metadata instead of breaking the conversation."""
    import json

    from bastion.storage.schema import MessageMeta

    c = store.create_conversation("t")
    m = store.add_message(c.id, "assistant", "a")
    legacy = {
        "prompt_tokens": 10,
        "prompt_tokens_evaluated": 4,
        "generated_tokens": 7,
        "decode_tokens_per_s": 61.5,
        "stop_reason": "cancelled",
        "dropped_messages": [],
        "sources": [{"n": 1, "ref_id": "x", "title": "T", "source": "S"}],
        "safety": [{"rule": "r", "stage": "output", "action": "caution", "message": "m"}],
        "generated": 7,
    }
    update = "UPDATE messages SET stats = ? WHERE id = ?"
    store.conn.execute(update, [json.dumps(legacy), m.id])
    meta = store.get_message(m.id).meta
    assert (meta.prompt_tokens, meta.generated_tokens, meta.stop_reason) == (10, 7, "cancelled")
    assert meta.sources[0].title == "T" and meta.safety[0].rule == "r"
    assert store.get_message(m.id).model_dump(by_alias=True)["stats"]["prompt_tokens"] == 10
    for bad in ({"generated_tokens": "many"}, {"sources": 3}, [1, 2], "x"):
        store.conn.execute(update, [json.dumps(bad), m.id])
        assert store.get_message(m.id).meta == MessageMeta()
    store.conn.execute(update, ["{not json", m.id])
    assert store.get_message(m.id).meta == MessageMeta()
    store.conn.execute(update, [json.dumps({"decode_tokens_per_s": 1e400}), m.id])
    assert store.get_message(m.id).meta == MessageMeta()  # not a finite number


def test_kv_states_kept_bounded_and_replaced(store: Store) -> None:
    """Saved prefix states: one per key, at most MAX_KV_STATES, newest kept."""
    from datetime import UTC, datetime, timedelta

    from bastion.storage.schema import KvState

    base = datetime.now(UTC)
    for i in range(Store.MAX_KV_STATES + 2):
        store.save_kv_state(
            KvState(
                key=f"k{i}",
                model_sha256="m",
                pack_id="p",
                pack_version="1.0.0",
                tokens=[1, 2, i],
                state=bytes([i]) * 10,
                created=base + timedelta(seconds=i),
            )
        )
    assert store.get_kv_state("k0") is None
    kept = store.get_kv_state(f"k{Store.MAX_KV_STATES + 1}")
    assert kept is not None and kept.tokens == [1, 2, Store.MAX_KV_STATES + 1]
    assert store.get_kv_state("missing") is None
    store.delete_kv_states("p")
    assert store.get_kv_state(f"k{Store.MAX_KV_STATES + 1}") is None
