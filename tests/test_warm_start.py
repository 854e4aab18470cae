"""Warm starts: a pack prefix's KV state kept in the vault across processes."""

from __future__ import annotations

from pathlib import Path

from bastion.app import model_choice
from bastion.app.session import ChatSession
from bastion.models.settings import SamplingSettings
from bastion.storage.vault import Vault
from tests.conftest import FAST_KDF

PW = "warm start passphrase"
QUESTION = "What does an INR test measure?"
GREEDY = SamplingSettings(temperature=0.0, max_tokens=12, seed=3)


def _ask(folder: Path) -> tuple[str, float, int, int]:
    session = ChatSession(folder)
    session.unlock(bytearray(PW.encode()))
    try:
        session.new_conversation(pack_id="medical")
        session.sampling_override = GREEDY
        pending = session.send(QUESTION)
        gen = session.generate(pending)
        text = gen.text()
        session.finish(pending, text)
        return text, pending.prefix_s, gen.stats.prompt_tokens_evaluated, gen.stats.prompt_tokens
    finally:
        session.lock()


def test_pack_prefix_state_is_kept_in_the_vault_for_the_next_run(tmp_path: Path) -> None:
    """The first pack conversation computes the prefix and saves its state in the (encrypted)
    vault; after a restart (a new engine, nothing in memory) the next one restores it instead
    of evaluating the system prompt and examples again, with the same answer."""
    folder = tmp_path / "data" / "vault"
    Vault.create(folder, PW, FAST_KDF).close()
    model_choice.close_engines()
    first, computed, evaluated_cold, total = _ask(folder)
    assert computed > 0
    with Vault.open(folder, PW) as vault:
        rows = vault.store.db.execute("SELECT pack_id, length(state) FROM kv_states").fetchall()
    assert len(rows) == 1 and rows[0][0] == "medical" and rows[0][1] > 100_000
    model_choice.close_engines()  # what a new process starts with: no engine, no states
    second, recomputed, evaluated_warm, _ = _ask(folder)
    assert recomputed == 0.0
    # Both runs evaluate only the question (the first computed the prefix apart, above).
    assert evaluated_warm == evaluated_cold < total - 500
    assert second == first


def test_removing_a_pack_forgets_its_saved_state(tmp_path: Path) -> None:
    """The saved prefix state goes with its pack."""
    folder = tmp_path / "data" / "vault"
    Vault.create(folder, PW, FAST_KDF).close()
    _ask(folder)
    with Vault.open(folder, PW) as vault:
        vault.store.remove_pack("medical")
        assert vault.store.db.execute("SELECT count(*) FROM kv_states").fetchone()[0] == 0
