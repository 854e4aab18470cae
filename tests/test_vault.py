"""The encrypted vault on real files: unlock, tamper, rollback, deletion, faults."""

from __future__ import annotations

import os
import random
import shutil
import stat
from pathlib import Path

import pytest

from bastion.storage import crypto
from bastion.storage.vault import (
    RollbackError,
    UnlockError,
    Vault,
    VaultCorruptError,
    VaultExistsError,
    VaultLockedError,
    VaultMissingError,
    file_mode_problems,
)
from tests.conftest import FAST_KDF
from tests.sqlcipher_pages import plaintext_of

PW = "correct horse battery staple"


@pytest.fixture
def vault_dir(tmp_path: Path) -> Path:
    return tmp_path / "vault"


def make_vault(folder: Path, n_messages: int = 3) -> None:
    with Vault.create(folder, PW, FAST_KDF) as v:
        c = v.store.create_conversation("first conversation")
        for i in range(n_messages):
            v.store.add_message(c.id, "user" if i % 2 == 0 else "assistant", f"message {i}")


def test_create_open_roundtrip(vault_dir: Path) -> None:
    """What is written is read back after close and reopen; files are private."""
    make_vault(vault_dir)
    with Vault.open(vault_dir, PW) as v:
        (conv,) = v.store.list_conversations()
        assert [m.content for m in v.store.thread(conv.id)] == [
            "message 0",
            "message 1",
            "message 2",
        ]
    assert stat.S_IMODE(vault_dir.stat().st_mode) == 0o700
    assert file_mode_problems(vault_dir) == []
    assert stat.S_IMODE((vault_dir / "vault.hdr").stat().st_mode) == 0o600
    assert stat.S_IMODE((vault_dir / "vault.db").stat().st_mode) == 0o600


def test_wrong_passphrase_is_opaque(vault_dir: Path) -> None:
    """A wrong passphrase raises the single opaque UnlockError."""
    make_vault(vault_dir)
    with pytest.raises(UnlockError, match="wrong passphrase or damaged vault header"):
        Vault.open(vault_dir, "wrong")


def test_create_refuses_existing(vault_dir: Path) -> None:
    """init never overwrites a vault."""
    make_vault(vault_dir)
    with pytest.raises(VaultExistsError):
        Vault.create(vault_dir, PW, FAST_KDF)


def test_missing_header_or_db(vault_dir: Path) -> None:
    """A missing header or database is named in the error."""
    with pytest.raises(VaultMissingError, match="no vault"):
        Vault.open(vault_dir, PW)
    make_vault(vault_dir)
    os.rename(vault_dir / "vault.hdr", vault_dir / "h.bak")
    with pytest.raises(VaultMissingError, match="header"):
        Vault.open(vault_dir, PW)
    os.rename(vault_dir / "h.bak", vault_dir / "vault.hdr")
    os.rename(vault_dir / "vault.db", vault_dir / "d.bak")
    with pytest.raises(VaultMissingError, match="database"):
        Vault.open(vault_dir, PW)


def test_second_open_is_refused(vault_dir: Path) -> None:
    """A vault open in one Bastion cannot be opened by another; it opens after close."""
    make_vault(vault_dir)
    first = Vault.open(vault_dir, PW)
    with pytest.raises(VaultLockedError):
        Vault.open(vault_dir, PW)
    first.close()
    Vault.open(vault_dir, PW).close()


def test_not_a_database(vault_dir: Path) -> None:
    """A plaintext SQLite file or garbage in place of the database is reported as corrupt."""
    make_vault(vault_dir)
    import sqlite3

    (vault_dir / "vault.db").unlink()
    sqlite3.connect(vault_dir / "vault.db").execute("CREATE TABLE t(x)").connection.commit()
    with pytest.raises(VaultCorruptError):
        Vault.open(vault_dir, PW)
    (vault_dir / "vault.db").write_bytes(os.urandom(8192))
    with pytest.raises(VaultCorruptError):
        Vault.open(vault_dir, PW)


def test_every_header_bit_flip_is_rejected(vault_dir: Path) -> None:
    """Flipping any single bit of the header gives UnlockError, never success or a crash."""
    make_vault(vault_dir, 1)
    original = (vault_dir / "vault.hdr").read_bytes()
    for bit in range(len(original) * 8):
        blob = bytearray(original)
        blob[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(UnlockError):
            crypto.unseal(bytes(blob), PW.encode())
    # and through the vault itself, for a sample
    for bit in random.Random(1).sample(range(len(original) * 8), 20):
        blob = bytearray(original)
        blob[bit // 8] ^= 1 << (bit % 8)
        (vault_dir / "vault.hdr").write_bytes(bytes(blob))
        with pytest.raises(UnlockError):
            Vault.open(vault_dir, PW)


def test_truncated_or_padded_header(vault_dir: Path) -> None:
    """A header of the wrong length is rejected the same way."""
    make_vault(vault_dir, 1)
    blob = (vault_dir / "vault.hdr").read_bytes()
    for bad in (b"", blob[:-1], blob + b"\0", blob[:10]):
        (vault_dir / "vault.hdr").write_bytes(bad)
        with pytest.raises(UnlockError):
            Vault.open(vault_dir, PW)


def test_kdf_downgrade_rejected(vault_dir: Path) -> None:
    """Rewriting the KDF parameters (weaker or stronger) breaks unwrapping."""
    make_vault(vault_dir, 1)
    h = crypto.parse((vault_dir / "vault.hdr").read_bytes())
    blob = bytearray((vault_dir / "vault.hdr").read_bytes())
    blob[10:14] = (h.kdf.memory_kib * 2).to_bytes(4, "big")
    with pytest.raises(UnlockError):
        crypto.unseal(bytes(blob), PW.encode())


def test_500_random_db_bit_flips_rejected(tmp_path: Path, vault_dir: Path) -> None:
    """500 random single-bit flips of the database are each reported as VaultCorruptError."""
    make_vault(vault_dir, 40)
    pristine = tmp_path / "pristine"
    shutil.copytree(vault_dir, pristine)
    data = (pristine / "vault.db").read_bytes()
    rng = random.Random(2026)
    work = tmp_path / "work"
    for _ in range(500):
        bit = rng.randrange(len(data) * 8)
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(pristine, work)
        blob = bytearray(data)
        blob[bit // 8] ^= 1 << (bit % 8)
        (work / "vault.db").write_bytes(bytes(blob))
        with pytest.raises(VaultCorruptError):
            Vault.open(work, PW)


def _sessions(folder: Path, n: int) -> None:
    for i in range(n):
        with Vault.open(folder, PW) as v:
            c = v.store.create_conversation(f"session {i}")
            v.store.add_message(c.id, "user", f"text {i}")


@pytest.mark.parametrize("trial", range(10))
def test_restored_old_database_is_flagged(tmp_path: Path, vault_dir: Path, trial: int) -> None:
    """An older copy of the database restored beside a newer header is always flagged."""
    rng = random.Random(trial)
    make_vault(vault_dir, 2)
    _sessions(vault_dir, rng.randrange(0, 3))
    old = tmp_path / "old.db"
    shutil.copy(vault_dir / "vault.db", old)
    _sessions(vault_dir, rng.randrange(1, 4))
    shutil.copy(old, vault_dir / "vault.db")
    with pytest.raises(RollbackError, match="older than its header"):
        Vault.open(vault_dir, PW)
    # The user may knowingly accept it; it is reported, then the counters move on.
    with Vault.open(vault_dir, PW, accept_rollback=True) as v:
        assert v.rollback_warning and "older" in v.rollback_warning
    Vault.open(vault_dir, PW).close()


def test_restored_old_header_is_flagged(tmp_path: Path, vault_dir: Path) -> None:
    """An older header beside a newer database is flagged too."""
    make_vault(vault_dir, 2)
    old = (vault_dir / "vault.hdr").read_bytes()
    _sessions(vault_dir, 2)
    (vault_dir / "vault.hdr").write_bytes(old)
    with pytest.raises(RollbackError, match="header is older"):
        Vault.open(vault_dir, PW)


def test_change_passphrase(vault_dir: Path) -> None:
    """After a change only the new passphrase opens the vault; the data is unchanged."""
    make_vault(vault_dir)
    with Vault.open(vault_dir, PW) as v:
        v.change_passphrase("new secret", FAST_KDF)
    with pytest.raises(UnlockError):
        Vault.open(vault_dir, PW)
    with Vault.open(vault_dir, "new secret") as v:
        assert len(v.store.list_conversations()) == 1


def test_deletion_is_physical(vault_dir: Path) -> None:
    """Deleted text is gone from every page of the database and WAL, decrypted."""
    with Vault.create(vault_dir, PW, FAST_KDF) as v:
        key = crypto.subkey(v._key, "sqlcipher")
        keep = v.store.create_conversation("keep me")
        v.store.add_message(keep.id, "user", "harmless words")
        c = v.store.create_conversation("Titlecanaryqq")
        v.store.add_message(c.id, "user", "bodycanaryzz appears here")
        v.store.add_message(c.id, "assistant", "reply with bodycanaryzz")
        plain = plaintext_of(vault_dir / "vault.db", key)
        assert b"bodycanaryzz" in plain and b"Titlecanaryqq" in plain  # the decoder works
        v.store.delete_conversation(c.id)
        plain = plaintext_of(vault_dir / "vault.db", key)
        for needle in (b"bodycanaryzz", b"titlecanaryqq", b"Titlecanaryqq"):
            assert needle not in plain
        assert b"harmless words" in plain
        assert v.store.search("bodycanaryzz") == []


def test_pragmas_enforced(vault_dir: Path) -> None:
    """The required pragmas are in force on an open vault."""
    make_vault(vault_dir)
    with Vault.open(vault_dir, PW) as v:
        assert v.pragma_problems() == []
        conn = v.store.conn
        assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
        assert conn.execute("PRAGMA temp_store").fetchone()[0] == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert v.integrity_problems() == []


def test_golden_v1_vault_opens(tmp_path: Path) -> None:
    """The vault committed under tests/data (format version 1) still opens and reads."""
    import json

    golden = Path(__file__).parent / "data" / "vault-v1"
    work = tmp_path / "golden"
    shutil.copytree(golden, work)
    expected = json.loads((golden / "expected.json").read_text())
    pw = (golden / "passphrase.txt").read_text().strip()
    with Vault.open(work, pw) as v:
        convs = v.store.list_conversations()
        assert [c.title for c in convs] == expected["titles"]
        thread = v.store.thread(convs[0].id)
        assert [m.content for m in thread] == expected["first_thread"]
        assert [h.message_id is not None for h in v.store.search(expected["search"])]
        # Written before migration m002: opening it added the pack reference index, and
        # the old rows are untouched.
        assert "pack_chunks_fts" in v.store.db.table_names()
        from bastion.app import pack_library, packs

        assert pack_library.install_builtins(v.store) == ["legal", "medical"]
        found = v.store.pack_sources("legal", ["deposit"])
        assert found and found[0].ref_id == "tenancy-deposits"
        assert len(packs.builtin_ids()) == 2
    with pytest.raises(UnlockError):
        Vault.open(work, pw + "x")
