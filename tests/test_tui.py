"""The terminal app, driven with Textual's Pilot, on the real embedded model."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.worker import Worker, WorkerCancelled, WorkerFailed

from bastion.app.session import ChatSession
from bastion.storage.vault import Vault
from bastion.tui.app import BastionApp
from bastion.tui.chat import ChatScreen
from bastion.tui.unlock import UnlockScreen
from bastion.tui.widgets import MessageBox
from tests.conftest import FAST_KDF
from tests.conftest import TUI_PW as PW

SIZE = (120, 40)


def _finishable(app: BastionApp) -> list[Worker[Any]]:
    """The app's workers still running or pending, but for a file picker's loader."""
    return [w for w in app.workers if w.group != "_loader" and not w.is_finished]


async def settle(pilot: Pilot, app: BastionApp, timeout: float = 60.0) -> None:
    """Wait until every worker is done and no answer is being written.

    A file picker's DirectoryTree keeps a loader worker (group ``_loader``) waiting for
    folders to read for as long as it is shown: it never completes, so it is not waited on.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for worker in _finishable(app):
            with contextlib.suppress(WorkerCancelled, WorkerFailed):  # done, one way or other
                await asyncio.wait_for(worker.wait(), max(0.01, end - time.monotonic()))
        await pilot.pause(0.05)
        screen = app.screen
        busy = isinstance(screen, ChatScreen) and screen.generating
        if not busy and not any(w.is_running for w in _finishable(app)):
            await pilot.pause(0.05)
            return
    raise AssertionError("the app did not settle")


async def type_text(pilot: Pilot, text: str) -> None:
    await pilot.press(*[{" ": "space"}.get(c, c) for c in text])


async def unlock(pilot: Pilot, app: BastionApp, passphrase: str = PW) -> None:
    await pilot.click("#pass1")
    await type_text(pilot, passphrase)
    await pilot.press("enter")
    await settle(pilot, app)


async def confirm_recovery_key(pilot: Pilot, app: BastionApp) -> str:
    """On the recovery-key screen shown after creating a vault: tick "written down",
    continue; returns the key shown."""
    from textual.widgets import Checkbox

    from bastion.tui.recovery import RecoveryKeyScreen

    screen = app.screen
    assert isinstance(screen, RecoveryKeyScreen)
    key = screen.key
    screen.query_one("#recovery-done", Checkbox).value = True
    await pilot.pause(0.05)
    await pilot.click("#recovery-continue")
    await settle(pilot, app)
    return key


async def send(pilot: Pilot, app: BastionApp, text: str) -> None:
    await pilot.click("#composer")
    await type_text(pilot, text)
    await pilot.press("enter")
    await pilot.pause(0.1)
    await settle(pilot, app)


async def start_medical(pilot: Pilot, app: BastionApp) -> None:
    """Ctrl+N, then choose the medical pack in the picker (No pack, Legal, Medical)."""
    from bastion.tui.dialogs import PackScreen

    await pilot.press("ctrl+n")
    await settle(pilot, app)
    assert isinstance(app.screen, PackScreen)
    await pilot.press("down", "down", "enter")
    await settle(pilot, app)


async def test_first_run_creates_vault(private_dirs: Path) -> None:
    """First run asks for the passphrase twice, warns, creates the vault and shows its
    recovery key once, until the user confirms it is written down."""
    from textual.widgets import Button, Checkbox

    from bastion.storage import recovery_key
    from bastion.tui.recovery import RecoveryKeyScreen

    app = BastionApp(kdf=FAST_KDF)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, UnlockScreen) and app.screen.first_run
        assert "recovery key" in str(app.screen.query_one("#unlock-warning").render())
        await pilot.click("#pass1")
        await type_text(pilot, PW)
        await pilot.press("enter")
        await type_text(pilot, "different")
        await pilot.press("enter")
        await settle(pilot, app)
        assert isinstance(app.screen, UnlockScreen)  # mismatch: still here
        assert "differ" in str(app.screen.query_one("#unlock-error").render())
        assert app.screen.focused is app.screen.query_one("#pass2")  # cleared, retry there
        await type_text(pilot, PW)
        await pilot.press("enter")
        await settle(pilot, app)
        screen = app.screen
        assert isinstance(screen, RecoveryKeyScreen)
        key = str(screen.query_one("#recovery-key").render())
        recovery_key.decode(key)
        assert screen.query_one("#recovery-continue", Button).disabled
        screen.query_one("#recovery-done", Checkbox).value = True
        await pilot.pause(0.05)
        await pilot.click("#recovery-continue")
        await settle(pilot, app)
        assert isinstance(app.screen, ChatScreen)
        assert app.session.new_recovery_key is None  # forgotten once shown
    assert (private_dirs / "data" / "vault" / "vault.hdr").exists()
    with Vault.recover(private_dirs / "data" / "vault", key, "another long passphrase", FAST_KDF):
        pass


async def test_wrong_then_right_passphrase(vault_with_settings: Path) -> None:
    """A wrong passphrase shows an error and allows a retry; the right one unlocks."""
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app, "not it")
        assert isinstance(app.screen, UnlockScreen)
        assert "wrong passphrase" in str(app.screen.query_one("#unlock-error").render())
        await unlock(pilot, app)
        assert isinstance(app.screen, ChatScreen)


async def test_chat_streams_real_answer_then_regenerate_and_edit(vault_with_settings) -> None:
    """Send, see the model's streamed answer; regenerate and edit make branches."""
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await send(pilot, app, "What is the capital of France?")
        session: ChatSession = app.session
        assert [m.role for m in session.thread] == ["user", "assistant"]
        answer = session.thread[-1]
        assert "Paris" in answer.content
        boxes = list(app.screen.query(MessageBox))
        assert boxes[-1].text == answer.content
        assert app.screen.query_one("#status").render()  # status bar shows something
        assert "tok/s" in str(app.screen.query_one("#status").render())

        await pilot.press("ctrl+r")
        await pilot.pause(0.1)
        await settle(pilot, app)
        assert len(session.siblings(session.thread[-1].id)) == 2  # old answer kept
        assert len(session.thread) == 2

        # edit the question and resend: a sibling of the original question
        first_box = next(b for b in app.screen.query(MessageBox) if b.role == "user")
        first_box.focus()
        await pilot.press("e")
        composer = app.screen.query_one("#composer")
        assert composer.editing == session.thread[0].id
        composer.text = "What is the capital of Italy?"
        await pilot.press("enter")
        await pilot.pause(0.1)
        await settle(pilot, app)
        assert session.thread[0].content == "What is the capital of Italy?"
        assert len(session.siblings(session.thread[0].id)) == 2
        assert session.thread[-1].role == "assistant"


def allow_long_answers(vault: Path) -> None:
    """Answers of up to 600 tokens, sampled (a story goes on for many seconds)."""
    with Vault.open(vault, PW) as v:
        v.store.set_setting("app", {"sampling": {"temperature": 0.8, "max_tokens": 600}})


async def start_long_answer(pilot: Pilot, app: BastionApp) -> None:
    """Ask for a long story; return once its turn has begun (the question saved, the answer
    box shown, the app's objects frozen out of full garbage collections), at most 20 s."""
    await pilot.click("#composer")
    await type_text(pilot, "Write a very long story about a dragon and a knight.")
    await pilot.press("enter")
    started = time.monotonic()
    while not gc.get_freeze_count() and time.monotonic() - started < 20:
        await pilot.pause(0.05)


async def test_escape_stops_long_answer(vault_with_settings: Path) -> None:
    """Esc stops a long answer at once; the partial answer is kept and marked stopped. While
    the model writes, the app's objects are out of the garbage collector's full collections
    (which stalled the UI); they are back in them once the turn ends."""
    allow_long_answers(vault_with_settings)
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await start_long_answer(pilot, app)
        await pilot.pause(1.0)
        assert gc.get_freeze_count() > 0
        await pilot.press("escape")
        await settle(pilot, app)
        assert gc.get_freeze_count() == 0
        last = app.session.thread[-1]
        assert last.role == "assistant"
        assert last.meta.stop_reason == "cancelled"
        assert last.meta.generated_tokens < 600
        box = list(app.screen.query(MessageBox))[-1]
        assert "stopped" in str(box.query_one(".message-header").render())


async def test_search_opens_conversation(vault_with_settings: Path) -> None:
    """Search finds a message in another conversation and opens it there."""
    with Vault.open(vault_with_settings, PW) as v:
        a = v.store.create_conversation("Gardening")
        v.store.add_message(a.id, "user", "How do I grow tomatoes on a balcony?")
        v.store.add_message(a.id, "assistant", "Use a large pot and full sun.")
        b = v.store.create_conversation("Other")
        v.store.add_message(b.id, "user", "Unrelated text")
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await pilot.press("ctrl+f")
        await pilot.pause(0.1)
        await type_text(pilot, "tomatoes")
        await pilot.press("enter")
        await settle(pilot, app)
        await pilot.pause(0.2)
        await pilot.press("enter")
        await settle(pilot, app)
        assert app.session.conversation is not None
        assert app.session.conversation.id == a.id
        texts = [b.text for b in app.screen.query(MessageBox)]
        assert "How do I grow tomatoes on a balcony?" in texts


async def test_lock_clears_and_requires_passphrase(vault_with_settings: Path) -> None:
    """Locking drops the key and every decrypted widget, and asks for the passphrase."""
    with Vault.open(vault_with_settings, PW) as v:
        c = v.store.create_conversation("Secret plans")
        v.store.add_message(c.id, "user", "the secret message")
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await pilot.click("#conversations")
        await pilot.press("enter")
        await settle(pilot, app)
        assert app.screen.query(MessageBox)
        await pilot.press("ctrl+l")
        await settle(pilot, app)
        assert isinstance(app.screen, UnlockScreen) and not app.screen.first_run
        assert not app.session.unlocked and app.session.thread == []
        assert all(not isinstance(s, ChatScreen) for s in app.screen_stack)
        assert not app.screen.query(MessageBox)
        await unlock(pilot, app)
        assert isinstance(app.screen, ChatScreen)


async def test_lock_while_writing(vault_with_settings: Path) -> None:
    """Locked while the model writes: the answer stops, and no object of the session is
    left out of garbage collection (the turn froze them)."""
    allow_long_answers(vault_with_settings)
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await start_long_answer(pilot, app)
        assert gc.get_freeze_count() > 0 and app.screen.generating
        await pilot.press("ctrl+l")
        await settle(pilot, app)
        assert isinstance(app.screen, UnlockScreen)
        assert gc.get_freeze_count() == 0


async def test_idle_auto_lock(vault_with_settings: Path) -> None:
    """With a short idle delay set, the app locks itself after that delay."""
    with Vault.open(vault_with_settings, PW) as v:
        v.store.set_setting("app", {"auto_lock_minutes": 0.02})  # 1.2 s
    app = BastionApp()
    unlocked_at: list[float] = []

    def hook(message: object) -> None:
        if isinstance(message, UnlockScreen.Unlocked):
            unlocked_at.append(time.monotonic())

    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await pilot.click("#pass1")
        await type_text(pilot, PW)
        await pilot.press("enter")
        end = time.monotonic() + 20
        while not unlocked_at and time.monotonic() < end:
            await pilot.pause(0.05)
        assert unlocked_at, "never unlocked"
        while app.session.unlocked and time.monotonic() < end:
            await pilot.pause(0.05)
        locked_after = time.monotonic() - unlocked_at[0]
        assert not app.session.unlocked
        assert locked_after >= 1.2
        await settle(pilot, app)
        assert isinstance(app.screen, UnlockScreen)


async def test_export_dialog_and_import(vault_with_settings: Path, tmp_path: Path) -> None:
    """F5 exports the open conversation with a passphrase; F4 imports it back."""
    from bastion.storage import export as fmt

    with Vault.open(vault_with_settings, PW) as v:
        c = v.store.create_conversation("Notes for export")
        v.store.add_message(c.id, "user", "Contact me at someone@example.org please")
    out = tmp_path / "exported.age"
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await pilot.click("#conversations")
        await pilot.press("enter")
        await settle(pilot, app)
        await pilot.press("f5")
        await settle(pilot, app)
        screen = app.screen
        assert "1 email" in str(screen.query_one("#exp-preview").render())
        await pilot.click("#how-pass")
        screen.query_one("#exp-pass1").value = "export secret"
        screen.query_one("#exp-pass2").value = "export secret"
        screen.query_one("#exp-redact").value = True
        screen.query_one("#exp-path").value = str(out)
        await pilot.click("#exp-go")
        await settle(pilot, app)
        plain = fmt.decrypt(out.read_bytes(), passphrase="export secret").decode()
        assert "[EMAIL-1]" in plain and "someone@example.org" not in plain
        await pilot.press("f4")
        await pilot.pause(0.1)
        app.screen.query_one("#imp-path").value = str(out)
        app.screen.query_one("#imp-pass").value = "export secret"
        await pilot.click("#imp-go")
        await settle(pilot, app)
        titles = [c.title for c in app.session.conversations()]
        assert titles.count("Notes for export") == 2


async def test_medical_pack_disclaimer_red_flag_sources_and_template(
    vault_with_settings: Path,
) -> None:
    """A medical conversation shows the disclaimer; a red flag gets the fixed response without
    the model; a real answer lists its sources; /term opens the template form."""
    from bastion.app import packs
    from bastion.tui.dialogs import TemplateScreen

    medical = packs.builtin("medical")
    app = BastionApp(kdf=FAST_KDF)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await start_medical(pilot, app)
        screen = app.screen
        assert isinstance(screen, ChatScreen) and app.session.pack is not None
        banner = screen.query_one("#banner")
        assert banner.display and medical.disclaimer[:40] in str(banner.render())
        assert "Medical information" in str(screen.query_one("#status").render())

        await send(pilot, app, "I have chest pain and I am short of breath")
        answer = app.session.thread[-1]
        rule = next(r for r in medical.safety if r.id == "chest-pain")
        assert answer.content == rule.message
        assert answer.meta.stored() == {
            "fixed_response": True,
            "safety": [
                {
                    "rule": "chest-pain",
                    "stage": "input",
                    "action": "respond",
                    "message": rule.message,
                }
            ],
        }  # no generation statistics: the model was not asked
        box = list(screen.query(MessageBox))[-1]
        assert "safety response" in str(box.query_one(".message-header").render())

        await send(pilot, app, "What is the maximum daily dose of paracetamol?")
        answer = app.session.thread[-1]
        assert answer.meta.generated_tokens > 0
        assert answer.meta.sources[0].ref_id == "paracetamol"
        box = list(screen.query(MessageBox))[-1]
        assert "Sources: [1" in str(box.query_one(".message-sources").render())
        assert "About doses" in str(box.query_one(".safety-notes").render())
        conv = app.session.conversation
        assert conv is not None and conv.pack_id == "medical"

        await pilot.click("#composer")
        await type_text(pilot, "/term")
        await pilot.press("enter")
        await settle(pilot, app)
        assert isinstance(app.screen, TemplateScreen)
        await pilot.press("enter")  # empty: refused with the reason, the form stays
        await pilot.pause(0.1)
        assert "required" in str(app.screen.query_one("#template-error").render())
        await type_text(pilot, "tachycardia")
        await pilot.press("enter")
        await pilot.pause(0.2)
        await settle(pilot, app)
        user_msg = [m for m in app.session.thread if m.role == "user"][-1]
        assert user_msg.content == medical.template("term").render({"term": "tachycardia"})


async def test_enter_sends_keys_typed_before_it(vault_with_settings: Path) -> None:
    """Type-ahead: keys still queued for the composer when Enter (a priority binding) runs are
    part of the message; nothing is cut off or lost."""
    from textual import events

    from bastion.tui.widgets import Composer

    app = BastionApp(kdf=FAST_KDF)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        composer = app.screen.query_one(Composer)
        composer.focus()
        await pilot.pause(0.05)
        for ch in "hello there":
            composer.post_message(events.Key("space" if ch == " " else ch, ch))
        composer.action_submit()  # what the Enter binding does, before those keys are handled
        await pilot.pause(0.2)
        await settle(pilot, app)
        users = [m.content for m in app.session.thread if m.role == "user"]
        assert users == ["hello there"]
        assert composer.text == ""


async def test_pack_sources_are_prepared_while_typing(vault_with_settings: Path) -> None:
    """Once typing pauses in a pack conversation, the draft's sources are evaluated ahead:
    sending then evaluates little more than the question itself."""
    app = BastionApp(kdf=FAST_KDF)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await start_medical(pilot, app)
        await pilot.click("#composer")
        await type_text(pilot, "What is the maximum daily dose of paracetamol?")
        await pilot.pause(0.8)  # the typing pause that starts the preparation
        await settle(pilot, app)
        await pilot.press("enter")
        await pilot.pause(0.1)
        await settle(pilot, app)
        answer = app.session.thread[-1]
        assert answer.meta.sources
        assert answer.meta.prompt_tokens_evaluated < 40, answer.meta
