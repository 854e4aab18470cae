"""Named vaults: one per client, chosen with --vault / BASTION_VAULT, isolated from each
other; `vaults list|new|remove`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.app import paths
from bastion.app.cli import main
from bastion.app.session import ChatSession
from bastion.storage.vault import Vault
from tests.conftest import FAST_KDF


@pytest.fixture(autouse=True)
def _environment_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests run several CLI commands in one process, each reading the passphrase from
    the environment; a real command runs once per process and removes it (tested in
    test_hostile.py), so the removal is left out here."""
    from bastion.app import secrets_input

    monkeypatch.setattr(secrets_input, "scrub_environment", lambda name: None)


FAST = ["--kdf-memory-mib", "8", "--kdf-passes", "1"]
PW_A = "amber falcon river cello"
PW_B = "granite lotus whistle bay"
CANARY = "CANARY-zebrafish-7731"


@pytest.fixture(autouse=True)
def _reset_selection() -> object:
    yield
    paths.select_vault(None)


def test_vault_dir_is_derived_in_one_place(
    private_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """default keeps the old folder; names live under vaults/; --vault beats BASTION_VAULT."""
    data = private_dirs / "data"
    assert paths.vault_dir() == data / "vault"
    assert paths.vault_dir("client-017") == data / "vaults" / "client-017"
    monkeypatch.setenv("BASTION_VAULT", "acme")
    assert paths.vault_dir() == data / "vaults" / "acme"
    paths.select_vault("beta")
    assert paths.vault_dir() == data / "vaults" / "beta"
    paths.select_vault(None)
    assert paths.vault_dir() == data / "vaults" / "acme"
    for bad in ("..", ".hidden", "a/b", "x" * 65, "new\nline", "-dash", "é"):
        with pytest.raises(paths.VaultNameError):
            paths.vault_dir(bad)
        with pytest.raises(paths.VaultNameError):
            paths.select_vault(bad)
    with pytest.raises(paths.VaultNameError):
        paths.select_vault("")


def test_cli_vaults_new_list_remove(
    private_dirs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """vaults new makes a vault with its recovery key; list shows them; remove needs the
    passphrase and confirmation."""
    monkeypatch.setenv("BASTION_PASSPHRASE", PW_A)
    assert main(["init", *FAST]) == 0
    assert main(["vaults", "new", "client-a", *FAST]) == 0
    out = capsys.readouterr().out
    assert "RECOVERY KEY" in out
    monkeypatch.setenv("BASTION_PASSPHRASE", PW_B)
    assert main(["vaults", "new", "client-b", *FAST]) == 0
    assert main(["vaults", "new", "client-b", *FAST]) == 1  # never overwrites
    capsys.readouterr()
    assert main(["--vault", "client-b", "vaults", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["name"] for v in listed] == ["default", "client-a", "client-b"]
    assert [v["current"] for v in listed] == [False, False, True]
    # remove: wrong passphrase refused, no terminal to confirm refused, --yes removes.
    monkeypatch.setenv("BASTION_PASSPHRASE", PW_A)
    assert main(["vaults", "remove", "client-b", "--yes"]) == 1
    assert paths.vault_exists(paths.vault_dir("client-b"))
    monkeypatch.setenv("BASTION_PASSPHRASE", PW_B)
    monkeypatch.setattr("bastion.app.cli.vaults.confirm", lambda q: False)
    assert main(["vaults", "remove", "client-b"]) == 1
    assert paths.vault_exists(paths.vault_dir("client-b"))
    assert main(["vaults", "remove", "client-b", "--yes"]) == 0
    assert not paths.vault_dir("client-b").exists()
    assert paths.vault_names() == ["default", "client-a"]
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert main(["--vault", "../x", "vaults", "list"]) == 1


def test_canary_never_crosses_vaults(
    private_dirs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A canary in one vault: search, show, list and export from another find nothing."""
    with Vault.create(paths.vault_dir("alpha"), PW_A, FAST_KDF) as v:
        c = v.store.create_conversation(f"title {CANARY}")
        v.store.add_message(c.id, "user", f"the patient said {CANARY}")
        canary_id = c.id
    with Vault.create(paths.vault_dir("beta"), PW_B, FAST_KDF) as v:
        c = v.store.create_conversation("unrelated")
        v.store.add_message(c.id, "user", "nothing to see")
    monkeypatch.setenv("BASTION_PASSPHRASE", PW_B)
    monkeypatch.setenv("BASTION_VAULT", "beta")
    capsys.readouterr()
    assert main(["history", "list", "--json"]) == 0
    assert main(["history", "search", CANARY, "--json"]) == 0
    assert main(["history", "search", "patient", "--json"]) == 0
    assert main(["history", "show", canary_id]) == 1
    assert main(["audit", "--json"]) == 0
    out = capsys.readouterr()
    assert CANARY not in out.out + out.err
    assert canary_id not in out.out
    # The same through the session (what the app uses).
    session = ChatSession(paths.vault_dir("beta"))
    session.unlock(bytearray(PW_B.encode()))
    try:
        assert all(CANARY not in c.title for c in session.conversations())
        assert session.search(CANARY) == [] and session.search("patient") == []
        with pytest.raises(Exception, match="no conversation"):
            session.open(canary_id)
        # Switching to alpha: beta is locked first; alpha needs its own passphrase.
        session.select_vault("alpha")
        assert not session.unlocked
        session.unlock(bytearray(PW_A.encode()))
        assert any(h.conversation_id == canary_id for h in session.search(CANARY))
    finally:
        session.lock()
    # The right vault finds it (the canary is real).
    monkeypatch.setenv("BASTION_PASSPHRASE", PW_A)
    assert main(["--vault", "alpha", "history", "search", CANARY, "--json"]) == 0
    assert canary_id in capsys.readouterr().out


def test_switching_vaults_drops_kv_state(private_dirs: Path, engine: object) -> None:
    """Selecting another vault locks the current one and clears the model's KV cache."""
    from bastion.models.engine import ChatMessage, Engine

    assert isinstance(engine, Engine)
    with Vault.create(paths.vault_dir("alpha"), PW_A, FAST_KDF):
        pass
    session = ChatSession(paths.vault_dir("alpha"))
    session.unlock(bytearray(PW_A.encode()))
    session.engine = engine
    engine.prefill([ChatMessage(role="user", content=f"remember {CANARY}")])
    assert engine.llama.n_tokens > 0
    session.select_vault("beta")
    assert not session.unlocked and session.vault is None
    assert engine.llama.n_tokens == 0
    assert session.folder == paths.vault_dir("beta")
