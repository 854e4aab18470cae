"""The Bastion terminal app."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from functools import partial
from typing import Any

from textual import events, on
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from bastion.app.session import ChatSession, KdfParams
from bastion.tui.chat import ChatScreen
from bastion.tui.dialogs import HelpScreen
from bastion.tui.unlock import UnlockScreen

IDLE_CHECK_S = 0.25


class BastionApp(App[None]):
    """Unlock, then chat. Locking returns to the unlock screen with nothing decrypted left."""

    CSS_PATH = "bastion.tcss"
    TITLE = "Bastion"
    BINDINGS = [
        Binding(
            "ctrl+l",
            "lock",
            "Lock",
            id="app.lock",
            tooltip="Lock now: forget the key",
            priority=True,
        ),
        Binding("f1", "help", "Help", id="app.help", tooltip="Show every key"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", tooltip="Quit Bastion", priority=True),
    ]

    def __init__(
        self,
        session: ChatSession | None = None,
        *,
        kdf: KdfParams | None = None,
    ) -> None:
        super().__init__()
        self.session = session or ChatSession()
        self.kdf = kdf
        """Argon2 cost for a new vault (tests use a cheap one); None is the default."""
        self.last_activity = time.monotonic()
        self._held_keys: deque[events.Key] = deque()
        self._holding = False
        self._waiting_since: float | None = None
        self._release_to: Screen[Any] | None = None

    def on_mount(self) -> None:
        self.push_screen(
            UnlockScreen(self.session, self.kdf, first_run=not self.session.vault_exists)
        )
        self.set_interval(IDLE_CHECK_S, self._check_idle)

    # -- unlock and lock ------------------------------------------------------

    @on(UnlockScreen.Unlocked)
    def _unlocked(self) -> None:
        settings = self.session.settings
        if settings.theme in self.available_themes:
            self.theme = settings.theme
        if settings.keymap:
            self.set_keymap(settings.keymap)
        self.last_activity = time.monotonic()
        chat = ChatScreen(self.session)
        self.switch_screen(chat)
        self._offer_recovery()
        self.release_keys(chat)  # keys typed while unlocking: for the composer, once focused
        if self.session.purged_at_unlock:
            self.notify(f"Retention: deleted {self.session.purged_at_unlock} old conversation(s).")

    @on(UnlockScreen.Deriving)
    def _deriving(self) -> None:
        self.hold_keys()

    @on(UnlockScreen.UnlockFailed)
    def _unlock_failed(self) -> None:
        # Keys typed after a wrong passphrase were meant for the chat: drop them rather than
        # type them into the passphrase field.
        self._held_keys.clear()
        self._holding = False

    def _offer_recovery(self) -> None:
        """A new vault's recovery key, shown once; for a vault without one, the offer."""
        from bastion.tui.recovery import RecoveryKeyScreen, RecoveryOfferScreen

        if self.session.new_recovery_key:
            self.push_screen(RecoveryKeyScreen(self.session, self.session.new_recovery_key))
        elif not self.session.has_recovery_key:
            self.push_screen(RecoveryOfferScreen(self.session))

    def action_audit(self) -> None:
        """The open vault's audit log, read-only."""
        from bastion.tui.audit_view import AuditScreen

        if self.session.unlocked and self._chat_screen() is not None:
            self.push_screen(AuditScreen(self.session))

    def action_lock(self) -> None:
        if not self.session.unlocked:
            return
        chat = self._chat_screen()
        if chat is not None:
            chat.stop_generation()
        self.workers.cancel_group(self, "generate")
        # Drop every screen that shows decrypted content, then the key.
        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.switch_screen(UnlockScreen(self.session, self.kdf, first_run=False))
        self.session.lock()

    def _chat_screen(self) -> ChatScreen | None:
        return next((s for s in self.screen_stack if isinstance(s, ChatScreen)), None)

    def _check_idle(self) -> None:
        minutes = self.session.settings.auto_lock_minutes
        if not self.session.unlocked or minutes <= 0:
            return
        chat = self._chat_screen()
        if chat is not None and chat.generating:
            self.last_activity = time.monotonic()  # an answer being written is activity
            return
        if time.monotonic() - self.last_activity >= minutes * 60:
            self.action_lock()
            self.notify("Locked after inactivity.")

    async def on_event(self, event: events.Event) -> None:
        if isinstance(
            event,
            (
                events.Key,
                events.MouseDown,
                events.MouseScrollDown,
                events.MouseScrollUp,
                events.Paste,
            ),
        ):
            self.last_activity = time.monotonic()
        if isinstance(event, events.Key) and not event.is_forwarded:
            if self._holding or self._held_keys or self._awaiting_focus():
                self._held_keys.append(event)
                self._release_soon()
                return
            if await self._resolve_key(event):
                return
        await super().on_event(event)

    # -- type-ahead -------------------------------------------------------------------------
    #
    # Textual hands each key to the focused widget's queue, and a binding of the screen or the
    # app (Tab, F2, ...) runs only when that widget gets to the key and it bubbles up. Keys
    # typed in a burst (a password manager's auto-type, a fast typist) were all queued for
    # the widget that had focus first. Here a key bound by an ancestor of the focused widget
    # runs as soon as the app reads it, and keys read while a new screen has no focus yet
    # (or while the app holds them, e.g. during unlocking) wait and are then delivered in
    # order to whatever has focus.

    HOLD_LIMIT_S = 1.0
    """Longest a key waits for a new screen to take focus before it is delivered anyway."""

    def _awaiting_focus(self) -> bool:
        screen = self.screen
        target = self._release_to
        waiting = (
            (target is not None and screen is not target)
            or not screen.is_mounted
            or (screen.focused is None and bool(screen.focus_chain))
        )
        if not waiting:
            self._waiting_since = None
            self._release_to = None
            return False
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        return now - self._waiting_since < self.HOLD_LIMIT_S

    async def _resolve_key(self, event: events.Key) -> bool:
        """Priority bindings first (as Textual does), then :meth:`_ancestor_binding`."""
        if await self._check_bindings(event.key, priority=True):
            return True
        return await self._ancestor_binding(event)

    async def _ancestor_binding(self, event: events.Key) -> bool:
        """Resolve a non-printable key's binding as the app reads the key (a printable key is
        text for the focused widget). A binding of the screen or the app runs at once (it may
        move focus or open a screen: the keys after it must go there). A binding of the
        focused widget itself runs in that widget's queue, after the keys before it (Textual
        would resolve it only after the key came back up to the app, that is after the text
        typed behind it)."""
        focused = self.focused
        if focused is None or event.is_printable:
            return False
        for namespace, bindings in self.screen._modal_binding_chain:
            found = [b for b in bindings.key_to_bindings.get(event.key, ()) if not b.priority]
            if not found:
                continue
            if namespace is focused:
                action = found[0].action
                focused.call_later(self.run_action, action, focused)
                return True
            for binding in found:
                if await self.run_action(binding.action, namespace):
                    return True
        return False

    def hold_keys(self) -> None:
        """Keep the keys typed from now on until :meth:`release_keys` (a screen switch)."""
        self._holding = True

    def release_keys(self, screen: Screen[Any] | None = None) -> None:
        """Deliver the held keys, in order, to whatever has focus then (on ``screen``, once it
        is shown, if given)."""
        self._holding = False
        self._release_to = screen if self._held_keys else None
        self._release_soon()

    def _release_soon(self) -> None:
        self.set_timer(0.02, self._release_held)

    async def _release_held(self) -> None:
        while self._held_keys and not self._holding:
            if self._awaiting_focus():
                self._release_soon()
                return
            event = self._held_keys.popleft()
            if await self._resolve_key(event):
                continue
            await super().on_event(event)
        if not self._held_keys:
            self._release_to = None

    # -- help and commands ----------------------------------------------------

    def binding_rows(self) -> list[tuple[str, str, str, str]]:
        from bastion.tui.widgets import Composer, MessageBox

        rows = []
        for owner in (type(self), ChatScreen, Composer, MessageBox):
            for b in owner.BINDINGS:
                if isinstance(b, Binding):
                    rows.append((b.key, b.description, b.tooltip, b.id or ""))
        return rows

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.binding_rows()))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Lock", "Lock now and forget the key", self.action_lock)
        yield SystemCommand("Help: keys", "Show every key binding", self.action_help)
        if self.session.unlocked:
            yield SystemCommand("Audit log", "What happened to this vault", self.action_audit)
        if isinstance(screen, ChatScreen):
            for b in ChatScreen.BINDINGS:
                if isinstance(b, Binding) and b.action != "stop":
                    action = getattr(screen, f"action_{b.action}")
                    yield SystemCommand(b.description, b.tooltip, action)
            yield SystemCommand("Stop", "Stop the answer being written", screen.action_stop)
            pack = screen.session.pack
            for t in pack.templates if pack is not None else []:
                assert pack is not None
                yield SystemCommand(
                    f"Template: {t.title}",
                    f"/{t.id} ({pack.name})",
                    partial(screen.use_template, t.id),
                )

    # -- failures -------------------------------------------------------------

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """One place that turns any worker failure into a notification, never a crash."""
        if event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        text = str(error).splitlines()[0] if error and str(error) else type(error).__name__
        titles = {"store": "Vault", "model": "Model", "generate": "Answer", "search": "Search"}
        self.notify(
            text, title=titles.get(event.worker.group, "Error"), severity="error", timeout=8
        )
        if event.worker.group in ("generate", "turn"):
            chat = self._chat_screen()
            if chat is not None:
                chat.post_message(ChatScreen.GenerationFailed(text))

    def on_unmount(self) -> None:
        # Stop an answer being written first: locking waits for the engine, which would
        # otherwise finish the whole answer before the app can quit.
        chat = self._chat_screen()
        if chat is not None:
            chat.stop_generation()
        if self.session.unlocked:
            self.session.lock()
