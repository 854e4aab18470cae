"""The chat screen: conversations, messages, composer, status bar."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message as TMessage
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Label, ListView, Markdown, Static, TextArea
from textual.widgets.markdown import MarkdownStream

from app import offline
from models.discovery import ModelInfo
from models.engine import TurnStats
from storage.schema import Message, SearchHit
from tui.dialogs import (
    ConfirmScreen,
    ExportScreen,
    ImportScreen,
    ModelScreen,
    PackScreen,
    PromptScreen,
    SearchScreen,
    SettingsScreen,
    TemplateScreen,
)
from tui.widgets import (
    Banner,
    Composer,
    ConversationItem,
    MessageBox,
    StatusBar,
)

if TYPE_CHECKING:
    from app.session import ChatSession, PendingTurn

# In a pack conversation, once typing pauses this long, the draft's sources are looked up and
# evaluated into the KV cache, so that sending evaluates little more than the question.
PREFETCH_DELAY_S = 0.4

# How often streamed text is handed to the UI. Per-token UI updates halve generation speed on
# 2 cores (../shared/FINDINGS.md): the UI thread's CPU time is taken from llama.cpp's threads.
# Each UI update costs a Textual layout and render pass (measured: tens of ms on the UI
# thread); so the first text is shown at once, the rest in batches every STREAM_INTERVAL_S.
STREAM_INTERVAL_S = 0.5


class ChatScreen(Screen[None]):
    """Conversations on the left, the chosen one on the right, the composer below."""

    BINDINGS = [
        Binding("escape", "stop", "Stop", id="chat.stop", tooltip="Stop the answer being written"),
        Binding("ctrl+n", "new", "New", id="chat.new", tooltip="Start a new conversation"),
        Binding(
            "ctrl+g",
            "incognito",
            "Incognito",
            id="chat.incognito",
            tooltip="New conversation that is never written to disk",
        ),
        Binding(
            "ctrl+r",
            "regenerate",
            "Regenerate",
            id="chat.regenerate",
            tooltip="Write the last answer again (the old one stays as a branch)",
        ),
        Binding("ctrl+f", "search", "Search", id="chat.search", tooltip="Search all conversations"),
        Binding("ctrl+o", "models", "Model", id="chat.models", tooltip="Choose the model"),
        Binding("f2", "rename", "Rename", id="chat.rename", tooltip="Rename this conversation"),
        Binding("ctrl+t", "pin", "Pin", id="chat.pin", tooltip="Pin or unpin this conversation"),
        Binding(
            "ctrl+d",
            "delete",
            "Delete",
            id="chat.delete",
            tooltip="Delete this conversation (asks first)",
        ),
        Binding("f3", "settings", "Settings", id="chat.settings", tooltip="Settings"),
        Binding(
            "ctrl+e",
            "export",
            "Export",
            id="chat.export",
            tooltip="Export this conversation to an encrypted file",
        ),
        Binding(
            "f4",
            "import",
            "Import",
            id="chat.import",
            tooltip="Import conversations from an encrypted export",
        ),
    ]

    class Streamed(TMessage):
        """A batch of answer text arrived from the model."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class GenerationFinished(TMessage):
        """The answer is complete (or stopped) and saved."""

        def __init__(self, message: Message, stats: TurnStats) -> None:
            super().__init__()
            self.message = message
            self.stats = stats

    class GenerationFailed(TMessage):
        """The turn could not run (context overflow, model error)."""

        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    class ModelLoaded(TMessage):
        """A model finished loading."""

        def __init__(self, info: ModelInfo) -> None:
            super().__init__()
            self.info = info

    class ThreadLoaded(TMessage):
        """The conversation list and the current thread were read from the vault."""

        def __init__(self, scroll_to: str | None = None) -> None:
            super().__init__()
            self.scroll_to = scroll_to

    def __init__(self) -> None:
        super().__init__()
        self._turn: PendingTurn | None = None
        self._stream: MarkdownStream | None = None
        self._stream_box: MessageBox | None = None
        self._render_lock = asyncio.Lock()
        self._prefetch_timer: Timer | None = None

    @property
    def session(self) -> ChatSession:
        return self.app.session  # type: ignore[attr-defined,no-any-return]

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="sidebar"):
                yield Label("Conversations", classes="section")
                yield ListView(id="conversations")
            with Vertical(id="main"):
                yield Banner("", id="banner")
                yield VerticalScroll(id="messages")
                yield Composer(id="composer", soft_wrap=True, show_line_numbers=False)
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#banner").display = False
        self.query_one("#composer", Composer).focus()
        self._poll_guard()
        self.set_interval(1.0, self._poll_guard)
        self.refresh_all()
        self.load_model()

    def _poll_guard(self) -> None:
        bar = self.query_one(StatusBar)
        bar.guarded = offline.installed()
        bar.blocked = offline.blocked_count()

    # -- reading --------------------------------------------------------------

    @work(thread=True, group="store", exit_on_error=False)
    def refresh_all(self, scroll_to: str | None = None) -> None:
        """Re-read the conversation list (the thread is already in the session)."""
        self._convs = self.session.conversations()
        self.post_message(self.ThreadLoaded(scroll_to))

    @on(ThreadLoaded)
    async def _thread_loaded(self, event: ThreadLoaded) -> None:
        await self._render_sidebar()
        await self._render_thread()
        if event.scroll_to:
            target = self._box_for(event.scroll_to)
            if target is not None:
                self.query_one("#messages").scroll_to_widget(target, animate=False)
                target.focus()

    def _box_for(self, message_id: str) -> MessageBox | None:
        for box in self.query(MessageBox):
            if box.message is not None and box.message.id == message_id:
                return box
        return None

    async def _render_sidebar(self) -> None:
        async with self._render_lock:
            lv = self.query_one("#conversations", ListView)
            await lv.clear()
            current = self.session.conversation
            items = []
            if self.session.incognito and current is not None:
                items.append(
                    ConversationItem(current.id, "Incognito", pinned=False, incognito=True)
                )
            for c in getattr(self, "_convs", []):
                items.append(ConversationItem(c.id, c.title, pinned=c.pinned))
            await lv.extend(items)
            for i, item in enumerate(items):
                if current is not None and item.conv_id == current.id:
                    lv.index = i

    async def _render_thread(self) -> None:
        async with self._render_lock:
            await self._render_thread_locked()

    async def _render_thread_locked(self) -> None:
        box = self.query_one("#messages", VerticalScroll)
        await box.remove_children()
        widgets = []
        for m in self.session.thread:
            if m.role == "system":
                continue
            w = MessageBox(m, m.role, m.content)
            widgets.append(w)
        await box.mount_all(widgets)
        self._update_branch_marks()
        self._update_banner()
        box.anchor()

    def _update_branch_marks(self) -> None:
        if self.session.incognito:
            return
        self.update_branches()

    @work(thread=True, group="store", exit_on_error=False)
    def update_branches(self) -> None:
        marks = {}
        for m in self.session.thread:
            sibs = self.session.siblings(m.id)
            if len(sibs) > 1:
                marks[m.id] = ([s.id for s in sibs].index(m.id) + 1, len(sibs))
        self.app.call_from_thread(self._apply_marks, marks)

    def _apply_marks(self, marks: dict[str, tuple[int, int]]) -> None:
        for mid, mark in marks.items():
            box = self._box_for(mid)
            if box is not None:
                box.branch = mark

    def _update_banner(self) -> None:
        banner = self.query_one("#banner", Banner)
        notes = []
        if self.session.incognito:
            notes.append(
                "🕶 Incognito: this conversation lives only in memory and is never written to disk."
            )
        warning = getattr(self.session.vault, "rollback_warning", None)
        if warning:
            notes.append(f"⚠ {warning}")
        pack = self.session.pack
        if pack is not None:
            notes.append(f"{pack.name}: {pack.disclaimer}")
        banner.set_class(pack is not None, "-pack")
        banner.update("\n".join(escape(n) for n in notes))
        banner.display = bool(notes)
        self.query_one(StatusBar).pack = f"{pack.name} {pack.version}" if pack else None

    # -- model ----------------------------------------------------------------

    @work(thread=True, group="model", exclusive=True, exit_on_error=False)
    def load_model(self, info: ModelInfo | None = None) -> None:
        self.app.call_from_thread(self._set_state, "loading model…")
        info = info or self.session.model_for_conversation()
        self.session.load_model(info)
        self.post_message(self.ModelLoaded(info))

    def _set_state(self, state: str) -> None:
        self.query_one(StatusBar).state = state

    @on(ModelLoaded)
    def _model_loaded(self, event: ModelLoaded) -> None:
        bar = self.query_one(StatusBar)
        info = event.info
        bar.model = f"{info.name} · {info.quantization or '?'}"
        if self.session.engine is not None:
            bar.context_size = self.session.engine.n_ctx
        bar.state = ""

    # -- sending --------------------------------------------------------------

    @property
    def generating(self) -> bool:
        return self._turn is not None

    @on(TextArea.Changed, "#composer")
    def _draft_changed(self) -> None:
        """In a pack conversation, prepare the sources for the draft once typing pauses."""
        if self._prefetch_timer is not None:
            self._prefetch_timer.stop()
            self._prefetch_timer = None
        if self.session.pack is not None and not self.generating:
            self._prefetch_timer = self.set_timer(PREFETCH_DELAY_S, self._start_prefetch)

    def _start_prefetch(self) -> None:
        self._prefetch_timer = None
        text = self.query_one(Composer).text
        if self.generating or not text.strip() or text.startswith("/"):
            return
        self._prefetch(text)

    @work(thread=True, group="prefetch", exclusive=True, exit_on_error=False)
    def _prefetch(self, draft: str) -> None:
        # An optimisation only: if it fails, sending works as before, so nothing is shown.
        with contextlib.suppress(Exception):
            self.session.prefetch(draft)

    @on(Composer.Submitted)
    def _submitted(self, event: Composer.Submitted) -> None:
        if self.generating:
            self.notify("Wait for the answer, or press Esc to stop it.", severity="warning")
            return
        composer = event.composer
        editing = composer.editing
        text = event.text
        if not editing and text.startswith("/") and self._slash_command(text):
            composer.text = ""
            return
        composer.text = ""
        composer.editing = None
        self.prepare(text, editing)

    def _slash_command(self, text: str) -> bool:
        """Open the form of a pack template named by ``/id``; False to send ``text`` as is."""
        pack = self.session.pack
        name = text[1:].split(maxsplit=1)[0] if len(text) > 1 else ""
        if pack is None or not name:
            return False
        if name in ("help", "templates"):
            listed = ", ".join(f"/{t.id} ({t.title})" for t in pack.templates)
            self.notify(listed or "This pack has no templates.", title="Templates", timeout=12)
            return True
        template = next((t for t in pack.templates if t.id == name), None)
        if template is None:
            self.notify(f"No template /{name}; /help lists them.", severity="warning")
            return True
        self.use_template(template.id)
        return True

    def use_template(self, template_id: str) -> None:
        """Ask for a template's values, then send the filled-in message."""
        pack = self.session.pack
        if pack is None or self.generating:
            return

        def done(result: tuple[str, str] | None) -> None:
            if result:
                self.prepare(result[0], None, result[1])

        self.app.push_screen(TemplateScreen(pack.template(template_id)), done)

    @work(thread=True, group="store", exit_on_error=False)
    def prepare(self, text: str, editing: str | None, lookup: str | None = None) -> None:
        turn = self.session.edit(editing, text) if editing else self.session.send(text, lookup)
        self.app.call_from_thread(self._begin, turn)

    async def _begin(self, turn: PendingTurn) -> None:
        self._turn = turn
        self._convs = self.session.conversations()
        await self._render_sidebar()
        await self._render_thread()
        box = MessageBox(None, "assistant", "")
        box.pending_notes = [n.as_dict() for n in turn.notices if n.action == "caution"]
        await self.query_one("#messages").mount(box)
        self._stream_box = box
        self._stream = Markdown.get_stream(box.query_one(Markdown))
        self.query_one("#messages", VerticalScroll).anchor()
        self._set_state("writing… (Esc stops)")
        # A blinking cursor redraws the screen twice a second; while the model writes, every
        # redraw takes CPU from it (two cores: the UI thread competes with llama.cpp's).
        self.query_one(Composer).cursor_blink = False
        self.generate(turn)

    @work(thread=True, group="generate", exclusive=True, exit_on_error=False)
    def generate(self, turn: PendingTurn) -> None:
        try:
            gen = self.session.generate(turn)
        except Exception as exc:  # context overflow, model errors: one line for the user
            self.post_message(self.GenerationFailed(str(exc) or type(exc).__name__))
            return
        pieces: list[str] = []
        batch: list[str] = []
        last = 0.0  # the first piece is shown at once: time to first token is what users feel
        for piece in gen:
            pieces.append(piece)
            batch.append(piece)
            now = time.monotonic()
            if now - last >= STREAM_INTERVAL_S:
                self.post_message(self.Streamed("".join(batch)))
                batch.clear()
                last = now
        if batch:
            self.post_message(self.Streamed("".join(batch)))
        saved = self.session.finish(turn, "".join(pieces))
        self.post_message(self.GenerationFinished(saved, gen.stats))

    @on(Streamed)
    async def _streamed(self, event: Streamed) -> None:
        if self._stream is None or self._stream_box is None:
            return
        await self._stream.write(event.text)

    async def _end_stream(self) -> None:
        if self._stream is not None:
            await self._stream.stop()
        self._stream = None
        self._turn = None
        self.query_one(Composer).cursor_blink = True
        self._set_state("")

    @on(GenerationFinished)
    async def _finished(self, event: GenerationFinished) -> None:
        await self._end_stream()
        stats = event.stats
        box = self._stream_box
        self._stream_box = None
        if box is not None:
            box.finalize(event.message, event.message.content)
        if stats.dropped_messages:
            note = Static(
                f"⚠ {len(stats.dropped_messages)} older message(s) did not fit the model's "
                "context and were left out of this answer.",
                classes="context-note",
            )
            await self.query_one("#messages").mount(note, before=box)
        bar = self.query_one(StatusBar)
        if stats.prompt_tokens:  # a pack's fixed safety response involves no model
            bar.tokens_per_s = stats.decode_tokens_per_s
            bar.ttft = stats.time_to_first_token_s
            bar.context_used = stats.context_used
            bar.context_size = stats.context_size
        self._update_branch_marks()
        if not self.session.incognito:
            self.refresh_all()

    @on(GenerationFailed)
    async def _failed(self, event: GenerationFailed) -> None:
        await self._end_stream()
        if self._stream_box is not None:
            await self._stream_box.remove()
            self._stream_box = None
        self.notify(event.reason, title="Could not answer", severity="error", timeout=8)

    # -- actions --------------------------------------------------------------

    def action_stop(self) -> None:
        composer = self.query_one(Composer)
        if self._turn is not None:
            self._turn.cancel.set()
        elif composer.editing:
            composer.editing = None
            composer.text = ""

    def action_new(self) -> None:
        if self.generating:
            return
        self._offer_packs()

    @work(thread=True, group="store", exit_on_error=False)
    def _offer_packs(self) -> None:
        installed = self.session.available_packs()
        self.app.call_from_thread(self.app.push_screen, PackScreen(installed), self._start_with)

    def _start_with(self, pack_id: str | None) -> None:
        if pack_id is None:  # the picker was closed: nothing changes
            return
        self._new_conversation(pack_id or None)

    @work(thread=True, group="store", exit_on_error=False)
    def _new_conversation(self, pack_id: str | None) -> None:
        self.session.new_conversation(pack_id=pack_id)
        self.app.call_from_thread(self.query_one(Composer).focus)
        self.refresh_all()

    def action_incognito(self) -> None:
        if self.generating:
            return
        self.session.new_conversation(incognito=True)
        self.refresh_all()
        self.query_one(Composer).focus()

    def action_regenerate(self) -> None:
        if self.generating or not self.session.thread:
            return
        self._regenerate()

    @work(thread=True, group="store", exit_on_error=False)
    def _regenerate(self) -> None:
        turn = self.session.regenerate()
        if turn is not None:
            self.app.call_from_thread(self._begin, turn)

    def action_search(self) -> None:
        self.app.push_screen(SearchScreen(), self._open_hit)

    def _open_hit(self, hit: SearchHit | None) -> None:
        if hit is not None:
            self.open_conversation(hit.conversation_id, hit.message_id)

    @work(thread=True, group="store", exit_on_error=False)
    def open_conversation(self, conv_id: str, at_message: str | None = None) -> None:
        self.session.open(conv_id, at_message)
        self._convs = self.session.conversations()
        self.post_message(self.ThreadLoaded(at_message))
        engine = self.session.engine
        wanted = self.session.conversation.model_name if self.session.conversation else None
        if wanted and self.session.model and wanted != self.session.model.name and engine:
            self.load_model()

    @on(ListView.Selected, "#conversations")
    def _chosen(self, event: ListView.Selected) -> None:
        if self.generating:
            self.notify("Stop the answer first (Esc).", severity="warning")
            return
        item = event.item
        if isinstance(item, ConversationItem) and item.conv_id != "incognito":
            self.open_conversation(item.conv_id)

    def action_models(self) -> None:
        self._list_models()

    @work(thread=True, group="model", exit_on_error=False)
    def _list_models(self) -> None:
        models = self.session.available_models()
        current = self.session.model.name if self.session.model else None
        self.app.call_from_thread(
            self.app.push_screen, ModelScreen(models, current), self._model_chosen
        )

    def _model_chosen(self, info: ModelInfo | None) -> None:
        if info is not None:
            self.load_model(info)

    def _current_id(self) -> str | None:
        conv = self.session.conversation
        if conv is None or self.session.incognito:
            return None
        return conv.id

    def action_rename(self) -> None:
        cid = self._current_id()
        if cid is None:
            return
        title = self.session.conversation.title if self.session.conversation else ""

        def done(value: str | None) -> None:
            if value:
                self._store_op("rename", cid, value)

        self.app.push_screen(PromptScreen("Rename the conversation", title), done)

    def action_pin(self) -> None:
        cid = self._current_id()
        if cid is not None:
            self._store_op("pin", cid)

    def action_delete(self) -> None:
        cid = self._current_id()
        if cid is None:
            return

        def done(yes: bool | None) -> None:
            if yes:
                self._store_op("delete", cid)

        self.app.push_screen(ConfirmScreen("Delete this conversation for good?"), done)

    @work(thread=True, group="store", exit_on_error=False)
    def _store_op(self, op: str, cid: str, value: str = "") -> None:
        if op == "rename":
            self.session.rename(cid, value)
        elif op == "pin":
            self.session.toggle_pin(cid)
        elif op == "delete":
            self.session.delete_conversation(cid)
        self._convs = self.session.conversations()
        self.post_message(self.ThreadLoaded())

    def action_settings(self) -> None:
        themes = sorted(self.app.available_themes)
        screen = SettingsScreen(self.session.settings, self.session.sampling(), themes)
        self.app.push_screen(screen, self._settings_saved)

    def _settings_saved(self, result: object) -> None:
        if not result:
            return
        settings, sampling = result  # type: ignore[misc]
        self.app.theme = settings.theme
        self._save_settings(settings, sampling)

    @work(thread=True, group="store", exit_on_error=False)
    def _save_settings(self, settings: object, sampling: object) -> None:
        self.session.save_settings(settings)  # type: ignore[arg-type]
        self.session.set_sampling(sampling)  # type: ignore[arg-type]
        self.app.call_from_thread(self.notify, "Settings saved")

    def action_export(self) -> None:
        cid = self._current_id()
        if cid is None:
            self.notify("Open a saved conversation to export it.", severity="warning")
            return
        self._prepare_export(cid)

    @work(thread=True, group="store", exit_on_error=False)
    def _prepare_export(self, cid: str) -> None:
        preview = self.session.redaction_preview(cid)
        conv = self.session.conversation
        stem = "".join(ch if ch.isalnum() else "-" for ch in (conv.title if conv else "chat"))
        default = str(Path.home() / f"bastion-{stem.strip('-')[:40] or 'chat'}.age")

        def done(options: dict[str, Any] | None) -> None:
            if options:
                self._export(cid, options)

        self.app.call_from_thread(self.app.push_screen, ExportScreen(default, preview), done)

    @work(thread=True, group="store", exit_on_error=False)
    def _export(self, cid: str, options: dict[str, Any]) -> None:
        path = Path(options["path"]).expanduser()
        self.session.export_conversation(
            cid,
            path,
            passphrase=options["passphrase"],
            recipients=options["recipients"],
            form=options["form"],
            redact=options["redact"],
        )
        self.app.call_from_thread(self.notify, f"Exported (encrypted) to {path}")

    def action_import(self) -> None:
        def done(result: tuple[str, str | None] | None) -> None:
            if result:
                self._import(*result)

        self.app.push_screen(ImportScreen(), done)

    @work(thread=True, group="store", exit_on_error=False)
    def _import(self, path: str, passphrase: str | None) -> None:
        n = self.session.import_file(Path(path).expanduser(), passphrase)
        self._convs = self.session.conversations()
        self.post_message(self.ThreadLoaded())
        self.app.call_from_thread(self.notify, f"Imported {n} conversation(s)")

    # -- message actions ------------------------------------------------------

    @on(MessageBox.ActionRequested)
    def _message_action(self, event: MessageBox.ActionRequested) -> None:
        box = event.box
        msg = box.message
        if msg is None or self.generating:
            return
        if event.action == "copy":
            self.app.copy_to_clipboard(msg.content)
            delay = self.session.settings.clipboard_clear_seconds
            note = f" It will be cleared in {delay} s." if delay else ""
            self.notify(f"Copied to the clipboard.{note}")
            if delay:
                self.app.set_timer(delay, self._clear_clipboard)
        elif event.action == "edit" and msg.role == "user":
            composer = self.query_one(Composer)
            composer.text = msg.content
            composer.editing = msg.id
            composer.focus()
        elif event.action == "delete":

            def done(yes: bool | None) -> None:
                if yes:
                    self._delete_message(msg.id)

            self.app.push_screen(
                ConfirmScreen("Delete this message and everything after it?"), done
            )
        elif event.action == "branch":
            self._switch_branch(msg.id, event.step)

    def _clear_clipboard(self) -> None:
        self.app.copy_to_clipboard("")
        self.notify("Clipboard cleared.")

    @work(thread=True, group="store", exit_on_error=False)
    def _delete_message(self, message_id: str) -> None:
        self.session.delete_message(message_id)
        self._convs = self.session.conversations()
        self.post_message(self.ThreadLoaded())

    @work(thread=True, group="store", exit_on_error=False)
    def _switch_branch(self, message_id: str, step: int) -> None:
        self.session.switch_branch(message_id, step)
        sibs = self.session.siblings(message_id)
        ids = [s.id for s in sibs]
        target = ids[(ids.index(message_id) + step) % len(ids)] if len(ids) > 1 else message_id
        self.post_message(self.ThreadLoaded(target))
