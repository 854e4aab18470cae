"""The audit log: an event for each operation, ids never content, an append-only table whose
MAC chain names the first row changed behind its back; migration m003 from blank and v1."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlcipher3

from bastion.app import audit, pack_library, packs, paths
from bastion.app.cli import main
from bastion.app.session import ChatSession
from bastion.storage import crypto, recovery_key
from bastion.storage.audit import AuditError
from bastion.storage.migrations import migrations
from bastion.storage.store import Store
from bastion.storage.vault import Vault
from tests.conftest import FAST_KDF


@pytest.fixture(autouse=True)
def _environment_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests run several CLI commands in one process, each reading the passphrase from
    the environment; a real command runs once per process and removes it (tested in
    test_hostile.py), so the removal is left out here."""
    from bastion.app import secrets_input

    monkeypatch.setattr(secrets_input, "scrub_environment", lambda name: None)


PW = "quartz meadow lantern oboe"
NEW_PW = "saffron glacier tunnel kite"
CANARY = "CANARY-okapi-4412"
FAST = ["--kdf-memory-mib", "8", "--kdf-passes", "1"]
DATA = Path(__file__).parent / "data"


def raw_rows(folder: Path, pw: str) -> list[tuple[object, ...]]:
    """Every audit row, read through a raw SQLCipher connection (not the app)."""
    conn = raw_conn(folder, pw)
    try:
        return conn.execute("SELECT id, at, event, data, mac FROM audit ORDER BY id").fetchall()
    finally:
        conn.close()


def raw_conn(folder: Path, pw: str) -> sqlcipher3.Connection:
    key, _ = crypto.unseal((folder / "vault.hdr").read_bytes(), pw.encode())
    conn = sqlcipher3.connect(str(folder / "vault.db"), isolation_level=None)
    conn.execute(f"PRAGMA key = \"x'{crypto.subkey(key, 'sqlcipher').hex()}'\"")
    return conn


def events_of(folder: Path, pw: str) -> list[tuple[str, dict[str, object]]]:
    return [(str(r[2]), json.loads(str(r[3]))) for r in raw_rows(folder, pw)]


def test_every_operation_is_recorded_and_no_row_holds_content(
    private_dirs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """init, failed unlocks, unlock/lock, export, backup, import, restore, keys, packs,
    deletions, passwd, recovery, rotation: each leaves its event; the canary (in titles,
    messages, file names) is in no row."""
    monkeypatch.setenv("BASTION_PASSPHRASE", PW)
    assert main(["init", *FAST]) == 0
    key = next(
        line.strip()
        for line in capsys.readouterr().out.splitlines()
        if line.strip().count("-") == 5
    )
    folder = paths.vault_dir()
    with Vault.open(folder, PW) as v:
        c = v.store.create_conversation(f"Title {CANARY}")
        m1 = v.store.add_message(c.id, "user", f"Question about {CANARY}")
        v.store.add_message(c.id, "assistant", f"Answer {CANARY}", parent_id=m1.id)
        other = v.store.create_conversation(f"Other {CANARY}")
        v.store.add_message(other.id, "user", f"more {CANARY}")
        cid, other_id = c.id, other.id
    # Two failed unlocks are counted and recorded at the next unlock.
    monkeypatch.setenv("BASTION_PASSPHRASE", "not the passphrase")
    assert main(["history", "list"]) == 1
    assert main(["history", "list"]) == 1
    monkeypatch.setenv("BASTION_PASSPHRASE", PW)
    out = tmp_path / f"{CANARY}.age"
    assert main(["export", cid, str(out)]) == 0
    backup = tmp_path / f"backup-{CANARY}.age"
    monkeypatch.setenv("BASTION_EXPORT_PASSPHRASE", "export passphrase here")
    assert main(["backup", str(backup), "--passphrase"]) == 0
    assert main(["import", str(out)]) == 0
    assert main(["keys", "show"]) == 0
    # Packs: import a copy of a built-in under another id, trust a key, remove it.
    mine = tmp_path / "mine"
    shutil.copytree(packs.builtin_path("legal"), mine)
    toml = mine / "pack.toml"
    toml.write_text(toml.read_text().replace('id = "legal"', 'id = "firm"', 1))
    assert main(["packs", "import", str(mine)]) == 0
    _, public = packs.new_signing_key()
    assert main(["packs", "trust", public, "--name", f"Firm {CANARY}"]) == 0
    assert main(["packs", "remove", "firm", "--yes"]) == 0
    assert main(["history", "delete", other_id]) == 0
    monkeypatch.setenv("BASTION_NEW_PASSPHRASE", NEW_PW)
    assert main(["passwd"]) == 0
    monkeypatch.setenv("BASTION_PASSPHRASE", NEW_PW)
    assert main(["recovery-key", "--rotate"]) == 0
    new_key = next(
        line.strip()
        for line in capsys.readouterr().out.splitlines()
        if line.strip().count("-") == 5 and line.strip() != key
    )
    monkeypatch.setenv("BASTION_RECOVERY_KEY", new_key)
    monkeypatch.setenv("BASTION_NEW_PASSPHRASE", PW)
    assert main(["recover"]) == 0
    monkeypatch.setenv("BASTION_PASSPHRASE", PW)
    # The session: settings, message deletion, a model load, conversation deletion.
    session = ChatSession(folder)
    session.unlock(bytearray(PW.encode()))
    try:
        session.save_settings(session.settings.model_copy(update={"theme": "nord"}))
        session.open(cid)
        session.delete_message(session.thread[-1].id)
        session.load_model()
        session.delete_conversation(cid)
    finally:
        session.lock()
    # restore into a second vault
    assert main(["vaults", "new", "second", *FAST]) == 0
    assert main(["--vault", "second", "restore", str(backup)]) == 0

    events = events_of(folder, PW)
    names = [e for e, _ in events]
    for wanted in (
        "vault.create",
        "unlock",
        "lock",
        "export",
        "backup",
        "import",
        "pack.import",
        "pack.trust",
        "pack.remove",
        "conversation.delete",
        "passwd",
        "recovery_key.rotate",
        "recover",
        "settings.change",
        "message.delete",
        "model.load",
    ):
        assert wanted in names, wanted
    data = dict(events)
    assert data["export"]["conversations"] == [cid]
    assert len(data["export"]["recipients"]) == 1 and len(data["export"]["recipients"][0]) == 16
    assert data["import"]["authenticity"].startswith("authentic: signed by this vault")
    assert len(data["import"]["origin_sha256"]) == 64
    assert data["conversation.delete"]["conversation"] in (other_id, cid)
    assert data["settings.change"]["keys"] == ["theme"]
    assert data["model.load"]["file"].endswith(".gguf") and len(data["model.load"]["sha256"]) == 64
    unlocks = [d for e, d in events if e == "unlock"]
    assert [u["failed_before"] for u in unlocks].count(2) == 1
    # Deleting conversations kept the rows that name them.
    assert any(d.get("conversations") == [cid] for _, d in events)
    assert ("conversation.delete", {"conversation": cid}) in events
    restored = events_of(paths.vault_dir("second"), PW)
    assert "restore" in [e for e, _ in restored]
    # No content anywhere in the log, in either vault.
    for folder_ in (folder, paths.vault_dir("second")):
        for row in raw_rows(folder_, PW):
            text = json.dumps([str(x) for x in row])
            assert CANARY not in text and "Question" not in text and "Title" not in text
            assert PW not in text and NEW_PW not in text and key not in text
    # The log verifies.
    assert main(["audit", "verify"]) == 0
    capsys.readouterr()
    assert main(["audit", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    # ... and the unlock and lock of `audit verify`, then this command's own unlock.
    assert [e["event"] for e in listed] == [*names, "unlock", "lock", "unlock"]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert main(["audit", "--json", "--since", tomorrow]) == 0
    assert json.loads(capsys.readouterr().out) == []
    recovery_key.decode(key)


def make_vault(folder: Path) -> None:
    with Vault.create(folder, PW, FAST_KDF) as v:
        for i in range(5):
            audit.record(v.store, "conversation.delete", conversation=f"{i:032x}")


@pytest.mark.parametrize("column", ["event", "data", "at", "mac"])
def test_a_row_changed_behind_its_back_is_named(
    private_dirs: Path,
    column: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A row edited through a raw SQLCipher connection: `audit verify` names that row."""
    folder = paths.vault_dir()
    make_vault(folder)
    conn = raw_conn(folder, PW)
    try:
        with pytest.raises(sqlcipher3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit SET event = 'x' WHERE id = 3")
        with pytest.raises(sqlcipher3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit WHERE id = 3")
        conn.execute("DROP TRIGGER audit_no_update")  # an attacker with write access
        new = {
            "event": "'lock'",
            "data": '\'{"conversation": "' + "f" * 32 + "\"}'",
            "at": "'2020-01-01T00:00:00.000000+00:00'",
            "mac": "'" + "0" * 64 + "'",
        }[column]
        conn.execute(f"UPDATE audit SET {column} = {new} WHERE id = 3")
    finally:
        conn.close()
    monkeypatch.setenv("BASTION_PASSPHRASE", PW)
    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert "row 3" in err and len(err.strip().splitlines()) == 1


def test_removed_or_inserted_rows_are_named(private_dirs: Path) -> None:
    """A row deleted from the middle, or one inserted with a forged MAC, is found."""
    folder = paths.vault_dir()
    make_vault(folder)
    conn = raw_conn(folder, PW)
    try:
        conn.execute("DROP TRIGGER audit_no_delete")
        conn.execute("DELETE FROM audit WHERE id = 2")
    finally:
        conn.close()
    with Vault.open(folder, PW) as v:
        assert v.store.audit is not None
        report = v.store.audit.verify()
        assert not report.intact and report.first_bad == 3
    other = private_dirs / "other"
    make_vault(other)
    conn = raw_conn(other, PW)
    try:
        conn.execute(
            "INSERT INTO audit (id, at, event, data, mac) VALUES (100, 'x', 'y', '{}', ?)",
            ["ab" * 32],
        )
    finally:
        conn.close()
    with Vault.open(other, PW) as v:
        assert v.store.audit is not None
        assert v.store.audit.verify().first_bad == 100


def test_audit_fields_must_be_ids_and_numbers(private_dirs: Path) -> None:
    """Content-sized text, nested objects and odd names are refused; memory stores skip."""
    with Vault.create(paths.vault_dir(), PW, FAST_KDF) as v:
        with pytest.raises(AuditError):
            audit.record(v.store, "export", note="x" * 500)
        with pytest.raises(AuditError):
            audit.record(v.store, "export", nested={"a": 1})
        with pytest.raises(AuditError):
            audit.record(v.store, "Bad Event")
        audit.record(v.store, "export", conversations=["a", "b"], n=2, ok=True)
        assert v.store.audit is not None and v.store.audit.verify().intact
    memory = ChatSession.ephemeral()
    audit.record(memory.store, "export", conversations=["a"])  # nothing to write to
    assert audit.events(memory.store) == []


def test_rechain_for_a_new_data_key(private_dirs: Path) -> None:
    """A re-key's new audit key re-signs an intact chain; the old key no longer verifies."""
    folder = paths.vault_dir()
    make_vault(folder)
    with Vault.open(folder, PW) as v:
        log = v.store.audit
        assert log is not None
        log.rechain(crypto.subkey(crypto.new_key(), "audit-mac"))
        assert log.verify().intact
        log.append("rekey")
        assert log.verify().intact and log.verify().rows == 6
    with Vault.open(folder, PW) as v:
        assert v.store.audit is not None and v.store.audit.verify().first_bad == 1


def test_migration_from_blank_and_from_golden_v1(tmp_path: Path) -> None:
    """m003_audit applies to a blank store and to the golden v1 vault (whose rows are
    untouched), after which events chain."""
    assert "m003_audit" in [m.name for m in migrations._migrations]
    blank = Store(sqlcipher3.connect(":memory:"))
    assert "audit" in blank.db.table_names()
    assert blank.audit is None  # no key: a store outside a vault records nothing
    work = tmp_path / "golden"
    shutil.copytree(DATA / "vault-v1", work)
    pw = (work / "passphrase.txt").read_text().strip()
    conn = raw_conn(work, pw)
    try:
        assert "audit" not in [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
    finally:
        conn.close()
    with Vault.open(work, pw) as v:
        assert "audit" in v.store.db.table_names()
        assert [c.title for c in v.store.list_conversations()] == ["Héllo golden ✓"]
        audit.record(v.store, "unlock", via="test", failed_before=0)
        assert v.store.audit is not None and v.store.audit.verify().intact
    assert pack_library is not None
