"""Keys in the app: every advertised binding works from the composer, type-ahead keeps its
order across focus changes and screens, and the status says what is happening."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual import events
from textual.binding import Binding

from bastion.storage.vault import Vault
from bastion.tui.app import BastionApp
from bastion.tui.chat import ChatScreen
from bastion.tui.dialogs import HelpScreen
from bastion.tui.widgets import Composer, StatusBar
from tests.conftest import FAST_KDF
from tests.test_tui import PW, SIZE, send, settle, unlock


def _burst(app: BastionApp, keys: list[str]) -> None:
    """Queue key presses all at once, as a password manager's auto-type or type-ahead does."""
    for key in keys:
        char = {"space": " ", "tab": None, "enter": "\r"}.get(key, key if len(key) == 1 else None)
        app.post_message(events.Key(key, char))


def _chars(text: str) -> list[str]:
    return ["space" if c == " " else c for c in text]


async def test_burst_on_the_create_screen_fills_both_fields(tmp_path: Path) -> None:
    """Passphrase, Tab, passphrase, Enter typed in one burst create the vault: the keys after
    Tab go to the second field, not all into the first."""
    app = BastionApp(kdf=FAST_KDF)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        _burst(app, [*_chars(PW), "tab", *_chars(PW), "enter"])
        await pilot.pause(0.3)
        await settle(pilot, app)
        assert app.session.unlocked, "the vault was not created"
    folder = tmp_path / "data" / "vault"
    with Vault.open(folder, PW):
        pass


async def test_keys_typed_while_unlocking_reach_the_composer(vault_with_settings: Path) -> None:
    """Passphrase, Enter and the first words of a message typed in one burst: the words land in
    the composer once the chat screen is up, in order."""
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        _burst(app, [*_chars(PW), "enter", *_chars("hello there")])
        await pilot.pause(0.3)
        await settle(pilot, app)
        assert isinstance(app.screen, ChatScreen)
        assert app.screen.query_one(Composer).text == "hello there"


async def test_burst_through_a_dialog_keeps_order(vault_with_settings: Path) -> None:
    """F2, a new title and Enter typed in one burst rename the conversation: the title goes to
    the dialog that F2 opens, not to the composer behind it."""
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await send(pilot, app, "Hello")
        composer = app.screen.query_one(Composer)
        composer.focus()
        await pilot.pause(0.1)
        _burst(app, ["f2", "ctrl+a", "ctrl+k", *_chars("Renamed fast"), "enter"])
        await pilot.pause(0.5)
        await settle(pilot, app)
        assert app.session.conversation is not None
        assert app.session.conversation.title == "Renamed fast"
        assert composer.text == ""


def _advertised() -> list[tuple[str, str, str]]:
    out = []
    for owner, where in ((ChatScreen, "screen"), (BastionApp, "app")):
        for b in owner.BINDINGS:
            if isinstance(b, Binding) and b.action not in ("quit",):
                out.append((b.key, b.action.split("(")[0], where))
    return out


async def test_every_advertised_key_works_from_the_composer(
    vault_with_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each key in the footer and the help screen runs its action while the composer has
    focus (where the user almost always is)."""
    ran: list[str] = []
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await send(pilot, app, "Hello")
        composer = app.screen.query_one(Composer)
        for key, action, where in _advertised():
            target = app.screen if where == "screen" else app
            monkeypatch.setattr(
                target, f"action_{action}", lambda *a, name=action: ran.append(name)
            )
            composer.focus()
            await pilot.pause(0.05)
            ran.clear()
            await pilot.press(key)
            await pilot.pause(0.1)
            assert ran == [action], f"{key} did not run {action} from the composer"


async def test_help_screen_shows_every_key_as_itself(vault_with_settings: Path) -> None:
    """The help screen renders each key literally (`[` is `[`, not markup), one row each."""
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await pilot.press("f1")
        await pilot.pause(0.2)
        assert isinstance(app.screen, HelpScreen)
        keys = [str(label.render()) for label in app.screen.query(".help-key")]
        assert "[" in keys and "]" in keys
        assert all("/b]" not in k for k in keys)
        assert len(keys) == len(app.binding_rows())


async def test_status_says_loading_reading_writing_and_stopped(
    vault_with_settings: Path,
) -> None:
    """The status bar goes through loading the model, reading the prompt (tokens done of
    total), writing (tokens per second) and stopped."""
    seen: list[str] = []
    original = StatusBar.watch_state if hasattr(StatusBar, "watch_state") else None
    assert original is None

    def record(self: StatusBar, state: str) -> None:
        seen.append(state)

    StatusBar.watch_state = record  # type: ignore[attr-defined]
    try:
        with Vault.open(vault_with_settings, PW) as v:
            v.store.set_setting("app", {"sampling": {"temperature": 0, "max_tokens": 400}})
        app = BastionApp()
        async with app.run_test(size=SIZE) as pilot:
            await unlock(pilot, app)
            long = "Summarise this list: " + " ".join(f"item{i} blue" for i in range(150))
            await pilot.click("#composer")
            app.screen.query_one(Composer).text = long
            await pilot.press("enter")
            for _ in range(1200):
                await pilot.pause(0.05)
                if any(s.startswith("writing") and "tok/s" in s for s in seen):
                    break
            await pilot.press("escape")
            await settle(pilot, app)
    finally:
        del StatusBar.watch_state  # type: ignore[attr-defined]
    assert any(s.startswith("loading ") and "MB" in s for s in seen), seen
    assert any(s.startswith("reading the prompt: ") and "/" in s for s in seen), seen
    assert any(s.startswith("writing") and "tok/s" in s for s in seen), seen
    assert seen[-1] == "stopped", seen


async def test_escape_during_a_long_prefill_stops_it(vault_with_settings: Path) -> None:
    """Esc while the prompt is still being read stops the turn before the prompt is finished:
    nothing is generated, the answer is marked stopped."""
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        # About 3,000 tokens: several batches to read.
        long = "Summarise this list: " + " ".join(f"item{i} blue" for i in range(600))
        await pilot.click("#composer")
        screen.query_one(Composer).text = long
        await pilot.press("enter")
        for _ in range(400):
            await pilot.pause(0.02)
            if screen.query_one(StatusBar).state.startswith("reading the prompt: "):
                break
        await pilot.press("escape")
        await settle(pilot, app)
        answer = app.session.thread[-1]
        assert answer.role == "assistant" and answer.meta.stop_reason == "cancelled"
        assert answer.meta.generated_tokens == 0
        engine = app.session.engine
        assert engine is not None and engine.llama.n_tokens < answer.meta.prompt_tokens - 1
        assert screen.query_one(StatusBar).state == "stopped"
