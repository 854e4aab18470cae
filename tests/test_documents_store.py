"""Documents in the vault: migration m004, dedup, page-aware search, attachments, removal
that leaves nothing behind, and backup/restore."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlcipher3
from sqlite_utils import Database

from bastion.app import transfer
from bastion.app.documents import DocumentError, library
from bastion.storage import migrations
from bastion.storage.store import NotFoundError, Store
from bastion.storage.vault import Vault
from tests.conftest import FAST_KDF
from tests.test_documents import REAL_PDFS, real_pdf
from tests.test_vault_faults import scan


@pytest.fixture
def store() -> Store:
    return Store(sqlcipher3.connect(":memory:", check_same_thread=False, isolation_level=None))


def test_m004_from_blank_and_from_the_golden_v1_vault(tmp_path: Path) -> None:
    """m004_documents applies in order (after m003, before m005) on a blank database and on
    the v1 vault."""
    db = Database(sqlcipher3.connect(":memory:", isolation_level=None))
    migrations.apply(db)
    names = [m.name for m in migrations.migrations.applied(db)]
    assert names.index("m003_audit") < names.index("m004_documents") < names.index("m005_kv_states")
    assert {"documents", "document_pages", "document_chunks", "document_chunks_fts"} <= set(
        db.table_names()
    )
    golden = Path(__file__).parent / "data" / "vault-v1"
    work = tmp_path / "golden"
    shutil.copytree(golden, work)
    pw = (golden / "passphrase.txt").read_text().strip()
    with Vault.open(work, pw) as v:
        assert "m004_documents" in [m.name for m in migrations.migrations.applied(v.store.db)]
        added = library.add_bytes(v.store, "README.pdf", real_pdf("README.pdf"))
        assert added.created and v.store.list_conversations()  # old rows untouched
        hits = v.store.search_documents("mailing lists")
        assert hits and {h.title for h in hits} == {"README.pdf"}
        assert any(h.page == 4 and "[Mailing] [Lists]" in h.snippet for h in hits)


def test_dedup_by_sha256_and_prefix_lookup(store: Store) -> None:
    """The same bytes under another name are one document; ids resolve by prefix."""
    data = real_pdf("README.pdf")
    first = library.add_bytes(store, "README.pdf", data)
    again = library.add_bytes(store, "copy-of-readme.pdf", data, keep_original=True)
    assert first.created and not again.created
    assert again.record.id == first.record.id and again.record.has_original
    assert len(store.list_documents()) == 1
    assert store.find_document(first.record.id[:6]).id == first.record.id
    assert store.document_original(first.record.id) == data
    with pytest.raises(NotFoundError):
        store.find_document("zzzz")


def test_search_names_title_page_and_heading(store: Store) -> None:
    """`docs search` hits say which page of which document, and under which heading."""
    rec = library.add_bytes(store, "gmpl.pdf", real_pdf("gmpl.pdf")).record
    hits = store.search_documents("unsubscripted set")
    assert hits and all(h.document_id == rec.id and h.paged for h in hits)
    pages = store.document_pages(rec.id)
    for h in hits[:5]:
        plain = h.snippet.replace("[", "").replace("]", "").strip("…").split("…")[0]
        assert " ".join(plain.split())[:30] in " ".join(pages[h.page - 1].text.split())
    assert any("Set expressions" in h.heading for h in hits)
    assert store.search_documents('"; DROP TABLE documents; --') == []


def test_failed_files_add_nothing(store: Store, tmp_path: Path) -> None:
    """Hostile or broken files each fail in one line and leave the library unchanged."""
    bad = {
        "empty.pdf": b"",
        "half.pdf": real_pdf("gmpl.pdf")[:40_000],
        "photo.docx": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        "notes.xyz": b"hello",
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DocumentError) as exc:
            library.add_file(store, tmp_path / name)
        assert str(exc.value).startswith(name + ": ") and "\n" not in str(exc.value)
    with pytest.raises(DocumentError, match="not a regular file"):
        library.add_file(store, Path("/dev/zero"))
    assert store.list_documents() == []
    assert store.db.execute("SELECT count(*) FROM document_chunks_fts").fetchone()[0] == 0


def test_remove_leaves_no_trace_in_db_wal_or_index(tmp_path: Path) -> None:
    """Removing a document deletes rows, chunks, index entries and attachments, and
    truncates the WAL; the canary is then in no form in any file (raw pages decrypted)."""
    canary = "CanaryDocumentVv38"
    text = ("# Notes\n\n" + f"The patient code is {canary} and the dose is 5 mg.\n\n") * 30
    folder = tmp_path / "v"
    vault = Vault.create(folder, bytearray(b"pw"), FAST_KDF)
    store = vault.store
    conv = store.create_conversation("c")
    rec = library.add_bytes(store, "notes.md", text.encode(), keep_original=True).record
    store.attach_document(conv.id, rec.id)
    assert store.search_documents(canary) and store.conversation_documents(conv.id)
    store.remove_document(rec.id)
    assert store.search_documents(canary) == []
    assert store.conversation_documents(conv.id) == []
    for table in ("documents", "document_pages", "document_chunks"):
        assert store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
    store.db.execute(
        "CREATE VIRTUAL TABLE temp.doc_vocab USING fts5vocab(main, document_chunks_fts, row)"
    )
    assert store.db.execute("SELECT count(*) FROM temp.doc_vocab").fetchone()[0] == 0
    assert not (folder / "vault.db-wal").exists() or (folder / "vault.db-wal").stat().st_size == 0
    # Decrypted page images of the database hold the canary nowhere (secure delete).
    raw = (
        b"".join(bytes(r[0]) for r in store.db.execute("SELECT data FROM sqlite_dbpage").fetchall())
        if _has_dbpage(store)
        else b""
    )
    assert canary.encode() not in raw
    vault.close()
    assert scan(tmp_path, [canary]) == []


def _has_dbpage(store: Store) -> bool:
    try:
        store.db.execute("SELECT count(*) FROM sqlite_dbpage").fetchone()
    except Exception:
        return False
    return True


def test_backup_carries_documents_and_restore_reattaches(tmp_path: Path) -> None:
    """A backup holds each document (pages, chunks, original); restore brings them back,
    attached to the same conversations."""
    src = Vault.create(tmp_path / "a", bytearray(b"pw"), FAST_KDF)
    conv = src.store.create_conversation("contract questions")
    src.store.add_message(conv.id, "user", "hello")
    rec = library.add_bytes(
        src.store, "README.pdf", real_pdf("README.pdf"), keep_original=True
    ).record
    src.store.attach_document(conv.id, rec.id)
    backup = transfer.build_backup(src.store)
    src.close()
    assert backup["documents"][0]["sha256"] == rec.sha256
    assert backup["documents"][0]["conversations"] == [conv.id]
    dst = Vault.create(tmp_path / "b", bytearray(b"pw"), FAST_KDF)
    from bastion.app import pack_library

    pack_library.install_builtins(dst.store)
    assert transfer.restore_backup(dst.store, backup) == 1
    docs = dst.store.list_documents()
    assert [(d.sha256, d.pages, d.has_original) for d in docs] == [(rec.sha256, 4, True)]
    new_conv = dst.store.list_conversations()[0]
    assert [d.id for d in dst.store.conversation_documents(new_conv.id)] == [docs[0].id]
    assert dst.store.search_documents("mailing lists")
    assert dst.store.document_original(docs[0].id) == real_pdf("README.pdf")
    dst.close()


def test_real_pdfs_are_available() -> None:
    """The Debian documentation packages the set-up installs are there (never skipped)."""
    for path in REAL_PDFS.values():
        assert path.is_file(), f"{path} missing: run `make dev`"


def test_transcript_carries_cited_passages_not_documents(store: Store) -> None:
    """An export names each cited document by SHA-256 with the pages cited, carries the
    passages the question was sent with, and never a whole document."""
    from bastion.app import turn
    from bastion.storage.schema import MessageMeta

    rec = library.add_bytes(store, "gmpl.pdf", real_pdf("gmpl.pdf")).record
    sources = turn.find_document_sources(store, [rec], "unsubscripted set", lambda t: len(t) // 4)
    conv = store.create_conversation("q")
    store.add_message(
        conv.id, "user", "What is an unsubscripted set?", meta=MessageMeta(sources=sources)
    )
    store.add_message(
        conv.id,
        "assistant",
        "It is a set [1].",
        meta=MessageMeta(sources=[s.model_copy(update={"text": None}) for s in sources]),
    )
    doc, _ = transfer.build_export(store, [conv.id])
    exported = doc["conversations"][0]
    assert exported["cited_documents"] == [
        {
            "id": rec.id,
            "title": "gmpl.pdf",
            "sha256": rec.sha256,
            "pages": sorted({s.page for s in sources}),
        }
    ]
    sent = exported["messages"][0]["sources"]
    assert [s["text"] for s in sent] == [s.text for s in sources]
    body = transfer.render(doc, "json").decode()
    page = store.document_pages(rec.id, 30, 30)[0].text
    assert page[200:400] not in body  # an uncited page is not in the transcript
    redacted, _ = transfer.build_export(store, [conv.id], redact=True)
    assert redacted["conversations"][0]["cited_documents"][0]["sha256"] == rec.sha256
