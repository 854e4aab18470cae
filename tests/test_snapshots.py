"""SVG snapshots of the main screens at a fixed size, from deterministic data.

Update after an intended visual change with:
    .venv/bin/pytest tests/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from bastion.storage.schema import MessageMeta
from bastion.storage.vault import Vault
from bastion.tui.app import BastionApp
from bastion.tui.widgets import StatusBar
from tests.conftest import FAST_KDF
from tests.test_tui import PW, settle, unlock

SIZE = (110, 32)
T0 = datetime(2026, 3, 14, 9, 26, tzinfo=UTC)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.fixture
def filled_vault(private_dirs: Path) -> Path:
    folder = private_dirs / "data" / "vault"
    with Vault.create(folder, PW, FAST_KDF) as v:
        s = v.store
        old = s.create_conversation("Lease notice periods", created=T0 - timedelta(days=2))
        s.add_message(old.id, "user", "How much notice must a landlord give?", created=T0)
        c = s.create_conversation("Python: reading a file", created=T0)
        s.add_message(c.id, "user", "How do I read a text file in Python?", created=T0)
        s.add_message(
            c.id,
            "assistant",
            "Use a `with` block so the file is closed for you:\n\n```python\n"
            "with open('notes.txt', encoding='utf-8') as f:\n    text = f.read()\n```\n\n"
            "- `read()` returns the whole file\n- iterate over `f` for one line at a time",
            created=T0 + timedelta(minutes=1),
            meta=MessageMeta(generated_tokens=58, decode_tokens_per_s=61.2, stop_reason="eos"),
        )
        s.set_pinned(old.id, True)
        s.set_setting("app", {"auto_lock_minutes": 0})
    return folder


def test_unlock_first_run(snap_compare, private_dirs: Path) -> None:
    """The first-run screen: two passphrase fields and the no-recovery warning."""
    assert snap_compare(BastionApp(kdf=FAST_KDF), terminal_size=SIZE)


def test_chat_screen(snap_compare, filled_vault: Path) -> None:
    """The chat screen with a pinned conversation, a Markdown answer and the status bar."""

    async def run_before(pilot) -> None:
        app = pilot.app
        await unlock(pilot, app)
        await pilot.click("#conversations")
        await pilot.press("down", "enter")
        await settle(pilot, app)
        composer = app.screen.query_one("#composer")
        composer.cursor_blink = False  # a blinking cursor would make the snapshot flaky
        composer.focus()
        await pilot.pause(0.2)

    assert snap_compare(BastionApp(), terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare, filled_vault: Path) -> None:
    """The help screen lists every key with its id."""

    async def run_before(pilot) -> None:
        await unlock(pilot, pilot.app)
        await pilot.press("f1")
        await pilot.pause(0.2)

    assert snap_compare(BastionApp(), terminal_size=SIZE, run_before=run_before)


class _StatusHost(App[None]):
    """A tiny host for the status bar alone."""

    CSS_PATH = Path(__file__).resolve().parents[1] / "tui" / "bastion.tcss"

    def __init__(self, state: str) -> None:
        super().__init__()
        self.state = state

    def compose(self) -> ComposeResult:
        bar = StatusBar(id="status")
        bar.model = "SmolLM2 135M Instruct · Q4_1"
        bar.guarded = True
        bar.context_size = 4096
        bar.state = self.state
        yield bar


@pytest.mark.parametrize(
    "state",
    [
        "loading SmolLM2 135M Instruct (98 MB)…",
        "reading the prompt: 1,024/2,980 tokens (Esc stops)",
        "writing… 64 tok/s (Esc stops)",
        "stopped",
    ],
    ids=["loading", "reading", "writing", "stopped"],
)
def test_status_states(snap_compare, state: str) -> None:
    """The status bar while loading, reading the prompt, writing, and after a stop."""
    assert snap_compare(_StatusHost(state), terminal_size=(110, 3))
