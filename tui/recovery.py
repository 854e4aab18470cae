"""The recovery key, shown once after a vault is created (or a first one is made for an older
vault), and the offer to make one for a vault that has none."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Label, Static

from bastion.app.session import ChatSession

RECOVERY_WARNING = (
    "Write it down now and keep it somewhere safe, away from this computer. If you forget "
    "your passphrase it is the only way into this vault (`bastion recover`); anyone who has "
    "it can open the vault. It is stored nowhere in readable form and will not be shown again."
)


class RecoveryKeyScreen(ModalScreen[None]):
    """Shows the new recovery key until the user confirms they have written it down."""

    DEFAULT_CSS = """
    RecoveryKeyScreen { align: center middle; }
    #recovery-box { width: 72; height: auto; padding: 1 2; border: thick $warning;
        background: $surface; }
    #recovery-key { text-style: bold; color: $accent; content-align: center middle;
        width: 100%; margin: 1 0; }
    #recovery-warning { color: $warning; }
    #recovery-box Checkbox { margin-top: 1; }
    #recovery-box Button { margin-top: 1; width: 100%; }
    """

    def __init__(self, session: ChatSession, key: str) -> None:
        super().__init__()
        self.session = session
        self.key = key

    def compose(self) -> ComposeResult:
        with Vertical(id="recovery-box"):
            yield Label("Your recovery key (shown once)", classes="dialog-title")
            yield Static(self.key, id="recovery-key", markup=False)
            yield Static(RECOVERY_WARNING, id="recovery-warning")
            yield Checkbox("I have written it down", id="recovery-done")
            yield Button("Continue", id="recovery-continue", variant="primary", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#recovery-done", Checkbox).focus()

    @on(Checkbox.Changed, "#recovery-done")
    def _confirmed(self, event: Checkbox.Changed) -> None:
        self.query_one("#recovery-continue", Button).disabled = not event.value

    @on(Button.Pressed, "#recovery-continue")
    def _continue(self) -> None:
        self.session.forget_recovery_key()
        self.key = ""
        self.dismiss(None)


class RecoveryOfferScreen(ModalScreen[None]):
    """For a vault made before recovery keys: offer to make one now."""

    DEFAULT_CSS = """
    RecoveryOfferScreen { align: center middle; }
    #offer-box { width: 64; height: auto; padding: 1 2; border: round $warning;
        background: $surface; }
    #offer-box Horizontal { height: auto; margin-top: 1; align-horizontal: right; }
    #offer-box Button { margin-left: 1; }
    """

    class Made(Message):
        """The recovery key was made (the worker reports it)."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    class Failed(Message):
        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    def __init__(self, session: ChatSession) -> None:
        super().__init__()
        self.session = session

    def compose(self) -> ComposeResult:
        with Vertical(id="offer-box"):
            yield Label("This vault has no recovery key", classes="dialog-title")
            yield Static(
                "If you forget its passphrase, everything in it is lost. A recovery key is a "
                "second way in that you write down and keep safe. Make one now?"
            )
            yield Label("", id="offer-error")
            with Horizontal():
                yield Button("Not now", id="offer-later")
                yield Button("Make a recovery key", id="offer-make", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#offer-make", Button).focus()

    @on(Button.Pressed, "#offer-later")
    def _later(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#offer-make")
    def _make(self) -> None:
        for button in self.query(Button):
            button.disabled = True
        self._rotate()

    @work(thread=True, group="store", exclusive=True, exit_on_error=False)
    def _rotate(self) -> None:
        try:
            key = self.session.add_recovery_key()
        except Exception as exc:  # one line, the offer stays
            self.post_message(self.Failed(str(exc).splitlines()[0] if str(exc) else "failed"))
            return
        self.post_message(self.Made(key))

    @on(Failed)
    def _failed(self, event: Failed) -> None:
        for button in self.query(Button):
            button.disabled = False
        self.query_one("#offer-error", Label).update(event.reason)

    @on(Made)
    def _made(self, event: Made) -> None:
        self.app.switch_screen(RecoveryKeyScreen(self.session, event.key))
