"""The unlock / first-run screen. Nothing else is reachable while it is shown."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Input, Label, LoadingIndicator, Static

from bastion.app.secrets_input import strength
from bastion.app.session import ChatSession, KdfParams, RollbackError, UnlockError


@runtime_checkable
class KeyHolder(Protocol):
    """An app that can hold typed keys while the screen changes (see BastionApp)."""

    def hold_keys(self) -> None: ...

    def release_keys(self) -> None: ...


WARNING = (
    "Your passphrase encrypts everything Bastion stores. It cannot be recovered: "
    "if you forget it, your conversations are lost."
)


class UnlockScreen(Screen[None]):
    """Create the vault on first run, else ask for the passphrase."""

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

    def __init__(
        self, session: ChatSession, kdf: KdfParams | None = None, *, first_run: bool
    ) -> None:
        super().__init__()
        self.session = session
        self.kdf = kdf
        """Argon2 cost for a new vault (tests use a cheap one); None is the default."""
        self.first_run = first_run
        self._accept_rollback = False

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="unlock-box"):
            yield Static("[b]Bastion[/b]", id="unlock-title")
            yield Static("Your private assistant. Nothing leaves this machine.", classes="dim")
            if self.first_run:
                yield Label("Create your vault", classes="section")
                yield Static(WARNING, id="unlock-warning")
                yield Input(placeholder="passphrase", password=True, id="pass1")
                yield Label("", id="strength")
                yield Input(placeholder="repeat the passphrase", password=True, id="pass2")
                yield Button("Create vault", id="unlock-go", variant="primary")
            else:
                yield Label("Unlock your vault", classes="section")
                yield Input(placeholder="passphrase", password=True, id="pass1")
                yield Button("Unlock", id="unlock-go", variant="primary")
            yield LoadingIndicator(id="unlock-busy")
            yield Label("", id="unlock-error")

    def on_mount(self) -> None:
        self.query_one("#unlock-busy").display = False
        self.query_one("#pass1", Input).focus()

    @on(Input.Changed, "#pass1")
    def _strength(self, event: Input.Changed) -> None:
        if not self.first_run:
            return
        score, hint = strength(event.value) if event.value else (0, "")
        bar = "█" * (score + 1) + "░" * (4 - score) if event.value else ""
        self.query_one("#strength", Label).update(f"{bar} {hint}")

    def action_advance(self) -> None:
        focused = self.focused
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
            if strength(p1.value)[0] == 0:
                error.update("Too short: use at least 8 characters (12+ or four words is better).")
                self._not_going()
                return
        passphrase = bytearray(p1.value.encode("utf-8"))
        for field in self.query(Input):
            field.value = ""
            field.disabled = True
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
        self.query_one("#unlock-go", Button).disabled = False
        text = escape(event.reason)
        if event.rollback:
            self._accept_rollback = True
            text += ". Unlock again to accept it and continue."
        self.query_one("#unlock-error", Label).update(f"[$error]{text}[/]")
        self.query_one("#pass1", Input).focus()
