"""`passwd --rekey`: the data key rotated by re-encrypting the database into a new file,
swapped in so that kill -9 at any point leaves exactly one working vault."""

from __future__ import annotations

import random
from pathlib import Path

from bastion.storage.vault import REKEY_DB_NAME, REKEY_HEADER_NAME, UnlockError, Vault
from tests.conftest import FAST_KDF
from tests.test_vault_faults import child, read_until_killed


def _opens(folder: Path) -> list[str]:
    opened = []
    for pw in ("A", "B"):
        try:
            with Vault.open(folder, pw) as v:
                assert v.integrity_problems() == []
                opened.append(pw)
        except UnlockError:
            pass
    return opened


def test_kill9_during_rekey_leaves_one_working_vault(tmp_path: Path) -> None:
    """20 rounds of kill -9 at random points of rekeying: exactly one passphrase opens a
    whole vault holding every acknowledged message; no half-made file stays behind."""
    folder = tmp_path / "v"
    Vault.create(folder, "A", FAST_KDF).close()
    rng = random.Random(14)
    acknowledged = 0
    for _ in range(20):
        # Bring the vault back to passphrase A for the child.
        for pw in ("A", "B"):
            try:
                with Vault.open(folder, pw) as v:
                    if pw == "B":
                        v.change_passphrase("A", FAST_KDF)
                break
            except UnlockError:
                continue
        proc = child("rekey", folder)
        acked = read_until_killed(proc, rng.randrange(1, 5))
        acknowledged += len(acked)
        opens = _opens(folder)
        assert len(opens) == 1, opens
        # The acknowledged rekey is in force, or the next one that was under way.
        assert opens[0] in (acked[-1], "A" if acked[-1] == "B" else "B")
        assert not (folder / REKEY_HEADER_NAME).exists()
        assert not (folder / REKEY_DB_NAME).exists()
    with Vault.open(folder, opens[0]) as v:
        convs = v.store.list_conversations()
        messages = sum(len(v.store.thread(c.id)) for c in convs)
        # one message before each acknowledged rekey (and at most one more per round)
        assert acknowledged <= messages <= acknowledged + 20


def test_rekey_changes_the_database_key(tmp_path: Path) -> None:
    """After rekey, the old header (and its passphrase) no longer opens the database, and
    the new passphrase opens everything that was there."""
    folder = tmp_path / "v"
    with Vault.create(folder, "A", FAST_KDF) as v:
        c = v.store.create_conversation("kept")
        v.store.add_message(c.id, "user", "searchable words")
    old_header = (folder / "vault.hdr").read_bytes()
    old_db = (folder / "vault.db").read_bytes()
    with Vault.open(folder, "A") as v:
        v.rekey("A", FAST_KDF)  # same passphrase, new data key
        v.store.add_message(c.id, "user", "after rekey")
    assert (folder / "vault.db").read_bytes()[:4096] != old_db[:4096]
    with Vault.open(folder, "A") as v:
        assert [m.content for m in v.store.thread(c.id)] == ["searchable words", "after rekey"]
        assert v.store.search("searchable")
    (folder / "vault.hdr").write_bytes(old_header)
    try:
        Vault.open(folder, "A", accept_rollback=True).close()
    except Exception as exc:
        assert "damaged or not this vault's" in str(exc)
    else:
        raise AssertionError("an old header opened the rekeyed database")
