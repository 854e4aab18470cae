"""The app's vault chooser, recovery-key screens, weak-passphrase confirmation and the
read-only audit view, driven with Pilot."""

from __future__ import annotations

import shutil
from pathlib import Path

from textual.widgets import Button, DataTable, Input, Select

from bastion.app import paths
from bastion.storage.vault import Vault
from bastion.tui.app import BastionApp
from bastion.tui.audit_view import AuditScreen
from bastion.tui.chat import ChatScreen
from bastion.tui.recovery import RecoveryKeyScreen, RecoveryOfferScreen
from bastion.tui.unlock import NEW_VAULT, UnlockScreen
from tests.conftest import FAST_KDF
from tests.test_tui import SIZE, settle, type_text, unlock

PW_A = "amber falcon river cello"
PW_B = "granite lotus whistle bay"
CANARY = "CANARY-narwhal-5190"
DATA = Path(__file__).parent / "data"


def two_vaults() -> str:
    with Vault.create(paths.vault_dir(), PW_A, FAST_KDF) as v:
        c = v.store.create_conversation(f"Client A {CANARY}")
        v.store.add_message(c.id, "user", f"note {CANARY}")
        v.store.set_setting("app", {"auto_lock_minutes": 0})
    with Vault.create(paths.vault_dir("client-b"), PW_B, FAST_KDF) as v:
        c = v.store.create_conversation("Client B matter")
        v.store.set_setting("app", {"auto_lock_minutes": 0})
    return c.id


async def test_choose_another_vault_on_the_unlock_screen(private_dirs: Path) -> None:
    """The chooser lists the vaults; picking one unlocks only it; locking and picking the
    other needs that one's passphrase, and nothing of the first stays."""
    b_id = two_vaults()
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, UnlockScreen) and not screen.first_run
        choice = screen.query_one("#vault-choice", Select)
        assert choice.value == "default"
        choice.value = "client-b"
        await pilot.pause(0.1)
        assert app.session.folder == paths.vault_dir("client-b")
        await unlock(pilot, app, PW_A)  # the other vault's passphrase does not open it
        assert isinstance(app.screen, UnlockScreen)
        await unlock(pilot, app, PW_B)
        assert isinstance(app.screen, ChatScreen)
        titles = [c.title for c in app.session.conversations()]
        assert titles == ["Client B matter"] and app.session.search(CANARY) == []
        assert app.session.conversations()[0].id == b_id
        app.action_lock()
        await settle(pilot, app)
        screen = app.screen
        assert isinstance(screen, UnlockScreen)
        screen.query_one("#vault-choice", Select).value = "default"
        await pilot.pause(0.1)
        await unlock(pilot, app, PW_A)
        assert isinstance(app.screen, ChatScreen)
        assert [h.conversation_id for h in app.session.search(CANARY)]


async def test_new_vault_from_the_chooser_and_weak_passphrase_confirmation(
    private_dirs: Path,
) -> None:
    """ "New vault…" asks for a name; a weak passphrase is refused once with zxcvbn's reason,
    and created when the user insists."""
    two_vaults()
    app = BastionApp(kdf=FAST_KDF)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, UnlockScreen)
        screen.query_one("#vault-choice", Select).value = NEW_VAULT
        await pilot.pause(0.1)
        assert screen.first_run and screen.query_one("#vault-name").display
        screen.query_one("#vault-name", Input).value = "client-c"
        await pilot.click("#pass1")
        await type_text(pilot, "passwordpasswordpassword1234")
        await settle(pilot, app)
        meter = str(screen.query_one("#strength").render())
        assert "weak" in meter and "cracked in" in meter and "strong" not in meter
        screen.query_one("#pass2", Input).value = "passwordpasswordpassword1234"
        await pilot.click("#unlock-go")
        await settle(pilot, app)
        assert isinstance(app.screen, UnlockScreen)
        assert "Weak passphrase" in str(screen.query_one("#unlock-error").render())
        assert not paths.vault_started(paths.vault_dir("client-c"))
        await pilot.click("#unlock-go")
        await settle(pilot, app)
        assert isinstance(app.screen, RecoveryKeyScreen)
        assert paths.vault_exists(paths.vault_dir("client-c"))
        assert app.session.folder == paths.vault_dir("client-c")


async def test_old_vault_is_offered_a_recovery_key(private_dirs: Path) -> None:
    """A version-1 vault, once unlocked, offers a recovery key; accepting shows it once."""
    folder = paths.vault_dir()
    shutil.copytree(DATA / "vault-v1", folder)
    pw = (folder / "passphrase.txt").read_text().strip()
    for extra in ("passphrase.txt", "expected.json"):
        (folder / extra).unlink()
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app, pw)
        assert isinstance(app.screen, RecoveryOfferScreen)
        await pilot.click("#offer-make")
        await settle(pilot, app)
        assert isinstance(app.screen, RecoveryKeyScreen)
        key = app.screen.key
        assert app.session.has_recovery_key
    with Vault.recover(folder, key, "fresh long passphrase here", FAST_KDF):
        pass


async def test_audit_view_lists_events_read_only(private_dirs: Path) -> None:
    """The audit view shows this vault's events (the unlock included) and the chain check."""
    two_vaults()
    app = BastionApp()
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, app, PW_A)
        assert isinstance(app.screen, ChatScreen)
        app.action_audit()
        await settle(pilot, app)
        screen = app.screen
        assert isinstance(screen, AuditScreen)
        table = screen.query_one("#audit-table", DataTable)
        events = [str(table.get_row_at(i)[2]) for i in range(table.row_count)]
        assert "unlock" in events  # newest first: the model load may come after it
        assert "intact" in str(screen.query_one("#audit-status").render())
        assert not screen.query(Button) and not screen.query(Input)
        await pilot.press("escape")
        await settle(pilot, app)
        assert isinstance(app.screen, ChatScreen)
