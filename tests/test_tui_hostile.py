"""The terminal app under hostile input (issue 14): neutral export names, imported
conversations marked, data shown as text (never markup or control sequences)."""

from __future__ import annotations

import re
from pathlib import Path

from textual.content import Content
from textual.widgets import OptionList

from bastion.storage.vault import Vault
from bastion.tui.app import BastionApp
from bastion.tui.conversations import ConversationList
from tests.conftest import TUI_PW as PW
from tests.test_tui import SIZE, settle, unlock

TITLE = "My HIV test came back positive, what now?"


async def test_default_export_name_is_neutral(vault_with_settings: Path) -> None:
    """F5 (export) proposes bastion-<date>-<time>.age: the title never reaches a file name."""
    with Vault.open(vault_with_settings, PW) as v:
        c = v.store.create_conversation(TITLE)
        v.store.add_message(c.id, "user", "hello")
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        await pilot.click("#conversations")
        await pilot.press("enter")
        await settle(pilot, app)
        await pilot.press("f5")
        await settle(pilot, app)
        proposed = Path(app.screen.query_one("#exp-path").value)
        assert re.fullmatch(r"bastion-\d{8}-\d{6}\.age", proposed.name), proposed.name
        assert "HIV" not in str(proposed) and "positive" not in str(proposed)


async def test_sidebar_marks_imported_and_shows_hostile_titles(
    vault_with_settings: Path,
) -> None:
    """An imported conversation says so in the sidebar; a title with markup and escape
    sequences is shown as text."""
    hostile = "[@click=app.quit]Q[/] \x1b]0;pwned\x07"
    with Vault.open(vault_with_settings, PW) as v:
        v.store.create_conversation(hostile, imported=True)
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app)
        options = app.screen.query_one(ConversationList).query_one(OptionList)
        shown = [Content.from_markup(str(o.prompt)).plain for o in options.options]
        text = next(s for s in shown if "Q" in s)
        assert "(imported)" in text
        assert "[@click=app.quit]Q[/]" in text  # the markup is shown, not applied
        assert "\x1b" not in text and "\\x1b]0;pwned\\x07" in text
