"""`bastion ask` and the app run one and the same chat turn (app/turn.py via ChatSession)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bastion.app import packs
from bastion.app.session import ChatSession, PackContextError
from bastion.models.engine import Engine
from bastion.models.settings import SamplingSettings
from bastion.storage.schema import Message
from bastion.storage.vault import Vault
from bastion.tui.app import BastionApp
from tests.conftest import FAST_KDF, bastion_cmd, cli_env
from tests.test_tui import PW, SIZE, send, start_medical, unlock

QUESTION = "What is the maximum daily dose of paracetamol for an adult?"
GREEDY = {"temperature": 0.0, "max_tokens": 24, "seed": 1}


def _turn(folder: Path, conversation_id: str) -> tuple[Message, Message]:
    with Vault.open(folder, PW) as vault:
        thread = vault.store.thread(conversation_id)
    user, answer = (m for m in thread if m.role != "system")
    return user, answer


def _essentials(m: Message) -> dict[str, object]:
    return {
        "role": m.role,
        "content": m.content,
        "safety": [(n.rule, n.stage, n.action) for n in m.meta.safety],
        "sources": [(s.n, s.ref_id, s.text) for s in m.meta.sources],
        "fixed_response": m.meta.fixed_response,
    }


async def test_cli_and_app_produce_the_same_pack_turn(tmp_path: Path) -> None:
    """The same question with the medical pack, asked with `bastion ask --pack medical --save`
    and in the app, gives the same saved turn: question saved before the answer, the same
    safety notices, sources (with their text) and the same greedy answer."""
    folder = tmp_path / "data" / "vault"
    Vault.create(folder, PW, FAST_KDF).close()
    proc = subprocess.run(
        [
            *bastion_cmd(),
            "ask",
            "--pack",
            "medical",
            QUESTION,
            "--save",
            "--temperature",
            "0",
            "--max-tokens",
            "24",
            "--seed",
            "1",
        ],
        env=cli_env(tmp_path, BASTION_PASSPHRASE=PW),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    cli_id = proc.stderr.split("saved in conversation ")[1].split()[0]

    app = BastionApp(kdf=FAST_KDF)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await start_medical(pilot, app)
        # The app has no per-answer options: give it the pack's sampling with the CLI's flags.
        pack_sampling = packs.builtin("medical").sampling
        app.session.sampling_override = SamplingSettings(**{**pack_sampling.model_dump(), **GREEDY})
        await send(pilot, app, QUESTION)
        conv = app.session.conversation
        assert conv is not None and conv.pack_id == "medical"
        app_id = conv.id

    cli_user, cli_answer = _turn(folder, cli_id)
    app_user, app_answer = _turn(folder, app_id)
    assert cli_user.created <= cli_answer.created and app_user.created <= app_answer.created
    assert cli_answer.parent_id == cli_user.id and app_answer.parent_id == app_user.id
    assert _essentials(cli_user) == _essentials(app_user)
    assert cli_user.meta.sources, "the question should have been grounded by the pack"
    assert _essentials(cli_answer) == _essentials(app_answer)
    assert cli_answer.meta.generated_tokens > 0 and app_answer.meta.generated_tokens > 0


def test_cli_saves_the_question_before_the_answer(tmp_path: Path) -> None:
    """`ask --save` acknowledges the question before generating, as the app does: killed
    mid-answer (kill -9), the question is in the vault."""
    import os
    import signal

    folder = tmp_path / "data" / "vault"
    Vault.create(folder, PW, FAST_KDF).close()
    proc = subprocess.Popen(
        [*bastion_cmd(), "ask", "Write a long story about a lighthouse.", "--save"],
        env=cli_env(tmp_path, BASTION_PASSPHRASE=PW),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.read(1)  # the answer has started
        assert first, "no answer was streamed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    with Vault.open(folder, PW) as vault:
        convs = vault.store.list_conversations()
        assert len(convs) == 1
        users = [m.content for m in vault.store.thread(convs[0].id) if m.role == "user"]
    assert users == ["Write a long story about a lighthouse."]


def test_pack_min_context_applies_in_the_session(engine: Engine) -> None:
    """A pack's `min_context` is checked by the session, so the app enforces it as `ask` does."""
    session = ChatSession.ephemeral()
    session.new_conversation(incognito=True, pack_id="medical")
    assert session.pack is not None
    needed = engine.n_ctx * 2
    session.pack = session.pack.model_copy(update={"min_context": needed})
    session.engine = engine
    pending = session.send("What is the maximum daily dose of paracetamol?")
    with pytest.raises(PackContextError, match=str(needed)):
        session.generate(pending)
