"""The unlock / first-run screen: choose the vault, then create or unlock it. Nothing else is
reachable while it is shown."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Input, Label, LoadingIndicator, Select, Static

from bastion.app import paths
from bastion.app.secrets_input import Strength, strength
from bastion.app.session import ChatSession, KdfParams, RollbackError, UnlockError


@runtime_checkable
class KeyHolder(Protocol):
    """An app that can hold typed keys while the screen changes (see BastionApp)."""

    def hold_keys(self) -> None: ...

    def release_keys(self) -> None: ...


WARNING = (
    "Your passphrase encrypts everything Bastion stores. You will also get a recovery key: "
    "without the passphrase or that key, your conversations are lost."
)
NEW_VAULT = "\0new"
"""The vault chooser's "New vault…" entry (no vault name can start with a NUL)."""


def strength_text(verdict: Strength) -> str:
    """The meter shown while typing: a bar, zxcvbn's verdict and crack time, its advice."""
    bar = "█" * (verdict.score + 1) + "░" * (4 - verdict.score)
    return escape(f"{bar} {verdict.describe()}")


class UnlockScreen(Screen[None]):
    """Choose a vault; create it on first run, else ask for its passphrase."""

    AUTO_FOCUS = "#pass1"

    # A priority binding: Enter moves to the second field (or starts unlocking) as soon as it
    # is typed, so keys typed after it (type-ahead, auto-type) go to the right place.
    BINDINGS = [
        Binding(
            "enter",
            "advance",
            "Next",
            id="unlock.enter",
            tooltip="Next field, or unlock",
            priority=True,
            show=False,
        )
    ]

    class Unlocked(Message):
        """The vault is open."""

    class Deriving(Message):
        """The key is being derived: keys typed now are for the screen that comes next."""

    class UnlockFailed(Message):
        """Unlocking failed; ``reason`` is one line for the user."""

        def __init__(self, reason: str, rollback: bool = False) -> None:
            super().__init__()
            self.reason = reason
            self.rollback = rollback

    class StrengthMeasured(Message):
        """zxcvbn's verdict on what the first field held when it was measured."""

        def __init__(self, value: str, verdict: Strength) -> None:
            super().__init__()
            self.value = value
            self.verdict = verdict

    def __init__(
        self, session: ChatSession, kdf: KdfParams | None = None, *, first_run: bool
    ) -> None:
        super().__init__()
        self.session = session
        self.kdf = kdf
        """Argon2 cost for a new vault (tests use a cheap one); None is the default."""
        self.first_run = first_run
        """Whether the form creates a vault (none exists yet, or "New vault…" is chosen)."""
        self.new_vault = False
        """Whether "New vault…" is chosen (a name is asked for)."""
        self._accept_rollback = False
        self._insist = ""
        """A weak passphrase the user was warned about: submitting it again creates."""
        self._names = paths.vault_names()

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="unlock-box"):
            yield Static("[b]Bastion[/b]", id="unlock-title")
            yield Static("Your private assistant. Nothing leaves this machine.", classes="dim")
            if self._names:
                current = self.session.vault_name
                options = [(name, name) for name in self._names]
                options.append(("New vault…", NEW_VAULT))
                yield Select(
                    options,
                    value=current if current in self._names else NEW_VAULT,
                    allow_blank=False,
                    id="vault-choice",
                )
            yield Input(
                placeholder="new vault's name (a code like client-017: it is visible on disk)",
                id="vault-name",
            )
            yield Label("", id="unlock-heading", classes="section")
            yield Static(WARNING, id="unlock-warning")
            yield Input(placeholder="passphrase", password=True, id="pass1")
            yield Label("", id="strength")
            yield Input(placeholder="repeat the passphrase", password=True, id="pass2")
            yield Button("", id="unlock-go", variant="primary")
            yield LoadingIndicator(id="unlock-busy")
            yield Label("", id="unlock-error")

    def on_mount(self) -> None:
        self.query_one("#unlock-busy").display = False
        self._show_mode()
        self.query_one("#pass1", Input).focus()

    def _show_mode(self) -> None:
        creating = self.first_run
        self.query_one("#vault-name").display = self.new_vault
        self.query_one("#unlock-warning").display = creating
        self.query_one("#strength").display = creating
        self.query_one("#pass2").display = creating
        self.query_one("#unlock-heading", Label).update(
            "Create your vault" if creating else "Unlock your vault"
        )
        self.query_one("#unlock-go", Button).label = "Create vault" if creating else "Unlock"

    @on(Select.Changed, "#vault-choice")
    def _vault_chosen(self, event: Select.Changed) -> None:
        value = event.value
        if value == NEW_VAULT:
            self.new_vault = True
            self.first_run = True
        elif isinstance(value, str):
            # Switching locks the session: no state of the previous vault stays in memory.
            self.session.select_vault(value)
            self.new_vault = False
            self.first_run = not self.session.vault_exists
        self._accept_rollback = False
        self._insist = ""
        for field in self.query(Input):
            if field.id != "vault-name":
                field.value = ""
        self.query_one("#unlock-error", Label).update("")
        self._show_mode()
        self.query_one("#vault-name" if self.new_vault else "#pass1", Input).focus()

    @on(Input.Changed, "#pass1")
    def _strength(self, event: Input.Changed) -> None:
        if not self.first_run:
            return
        if not event.value:
            self.query_one("#strength", Label).update("")
            return
        self._measure(event.value)

    @work(thread=True, group="strength", exclusive=True, exit_on_error=False)
    def _measure(self, value: str) -> None:
        self.post_message(self.StrengthMeasured(value, strength(value)))

    @on(StrengthMeasured)
    def _measured(self, event: StrengthMeasured) -> None:
        if event.value == self.query_one("#pass1", Input).value and self.first_run:
            self.query_one("#strength", Label).update(strength_text(event.verdict))

    def action_advance(self) -> None:
        focused = self.focused
        if focused is not None and focused.id == "vault-name":
            self.query_one("#pass1", Input).focus()
            return
        if self.first_run and focused is not None and focused.id == "pass1":
            self.query_one("#pass2", Input).focus()
            return
        # Keys typed after Enter are for the chat: the app holds them (this runs as the key
        # is read, before the keys after it are handed to any widget).
        if isinstance(self.app, KeyHolder):
            self.app.hold_keys()
        if isinstance(focused, Input):
            # After the keys already queued for this field: they are part of the passphrase.
            focused.call_later(self._go)
        else:
            self._go()

    def _not_going(self) -> None:
        if isinstance(self.app, KeyHolder):
            self.app.release_keys()

    @on(Button.Pressed, "#unlock-go")
    def _go(self) -> None:
        p1 = self.query_one("#pass1", Input)
        error = self.query_one("#unlock-error", Label)
        name = None
        if self.new_vault:
            name = self.query_one("#vault-name", Input).value.strip()
            try:
                paths.check_vault_name(name)
            except paths.VaultNameError as exc:
                error.update(f"[$error]{escape(str(exc))}[/]")
                self.query_one("#vault-name", Input).focus()
                self._not_going()
                return
            if paths.vault_started(paths.vault_dir(name)):
                error.update(f"[$error]A vault named {escape(name)} already exists.[/]")
                self._not_going()
                return
        if not p1.value:
            error.update("Enter a passphrase.")
            self._not_going()
            return
        if self.first_run:
            p2 = self.query_one("#pass2", Input)
            if p1.value != p2.value:
                error.update("The two passphrases differ.")
                p2.value = ""
                p2.focus()
                self._not_going()
                return
            verdict = strength(p1.value)
            if not verdict.acceptable and self._insist != p1.value:
                self._insist = p1.value
                error.update(
                    f"[$warning]Weak passphrase: {escape(verdict.describe())}. "
                    "Choose a stronger one, or press Create again to use it anyway.[/]"
                )
                self._not_going()
                return
        if name is not None:
            self.session.select_vault(name)
        passphrase = bytearray(p1.value.encode("utf-8"))
        self._insist = ""
        for field in self.query(Input):
            field.value = ""
            field.disabled = True
        for select in self.query(Select):
            select.disabled = True
        self.query_one("#unlock-go", Button).disabled = True
        self.query_one("#unlock-busy").display = True
        error.update("Deriving the key…")
        self.post_message(self.Deriving())
        self._derive(passphrase)

    @work(thread=True, group="unlock", exclusive=True, exit_on_error=False)
    def _derive(self, passphrase: bytearray) -> None:
        # The session wipes the passphrase once the key is derived, whatever happens.
        try:
            if self.first_run:
                self.session.create_vault(passphrase, self.kdf)
            else:
                self.session.unlock(passphrase, accept_rollback=self._accept_rollback)
        except RollbackError as exc:
            self.post_message(self.UnlockFailed(str(exc).split(";")[0], rollback=True))
            return
        except UnlockError as exc:
            self.post_message(self.UnlockFailed(str(exc)))
            return
        except Exception as exc:  # any vault problem: one line, retry possible
            self.post_message(
                self.UnlockFailed(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            )
            return
        self.post_message(self.Unlocked())

    @on(UnlockFailed)
    def _failed(self, event: UnlockFailed) -> None:
        self.query_one("#unlock-busy").display = False
        for field in self.query(Input):
            field.disabled = False
        for select in self.query(Select):
            select.disabled = False
        self.query_one("#unlock-go", Button).disabled = False
        text = escape(event.reason)
        if event.rollback:
            self._accept_rollback = True
            text += ". Unlock again to accept it and continue."
        self.query_one("#unlock-error", Label).update(f"[$error]{text}[/]")
        self.query_one("#pass1", Input).focus()
