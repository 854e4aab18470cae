"""End to end: canaries typed into the real app never reach any file in plain text."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bastion.storage import export as fmt
from bastion.tui.app import BastionApp
from bastion.tui.chat import ChatScreen
from bastion.tui.unlock import UnlockScreen
from tests.conftest import FAST_KDF
from tests.test_tui import PW, SIZE, confirm_recovery_key, send, settle, type_text
from tests.test_vault_faults import scan

CANARIES = {
    "message": "CanaryMessageQv81",
    "title": "CanaryTitleWx27",
    "query": "CanaryQueryPl55",
    "second": "CanarySecondRt64",
}


async def test_canaries_only_inside_encrypted_files(
    private_dirs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Create vault, chat, regenerate, search, export, delete, lock, quit: then scan."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "exports" / "chat.age"
    out.parent.mkdir()
    app = BastionApp(kdf=FAST_KDF)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.click("#pass1")
        await type_text(pilot, PW)
        await pilot.press("enter")
        await type_text(pilot, PW)
        await pilot.press("enter")
        await settle(pilot, app)
        key = await confirm_recovery_key(pilot, app)
        assert isinstance(app.screen, ChatScreen)
        app.session.settings.sampling.max_tokens = 12
        await send(pilot, app, f"Please repeat {CANARIES['message']} back to me")
        assert app.session.search(CANARIES["message"])  # really stored (encrypted)
        await pilot.press("ctrl+r")
        await pilot.pause(0.1)
        await settle(pilot, app)
        app.session.rename(app.session.conversation.id, f"About {CANARIES['title']}")
        await pilot.press("ctrl+f")
        await pilot.pause(0.1)
        await type_text(pilot, CANARIES["query"])
        await pilot.press("enter")
        await settle(pilot, app)
        await pilot.press("escape")
        app.session.export_conversation(app.session.conversation.id, out)
        # a second conversation, then deleted
        await pilot.press("ctrl+n")
        await settle(pilot, app)
        await pilot.press("enter")  # no pack
        await settle(pilot, app)
        await send(pilot, app, f"Forget {CANARIES['second']} soon")
        second = app.session.conversation.id
        assert app.session.search(CANARIES["second"])
        app.session.delete_conversation(second)
        await pilot.press("ctrl+l")
        await settle(pilot, app)
        assert isinstance(app.screen, UnlockScreen)
        await pilot.press("ctrl+q")
    assert out.read_bytes().startswith(fmt.AGE_MAGIC)  # the export is encrypted
    hits = scan(tmp_path, [*CANARIES.values(), key, key.replace("-", "")])
    assert hits == []
    used = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "vault.db" for p in used) and any(p.name == "chat.age" for p in used)
