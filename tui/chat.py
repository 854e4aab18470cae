"""The chat screen: it arranges the conversation list, the thread view, the composer and the
status bar, and runs the session's blocking calls in thread workers.

Workers never touch widgets: each reports what it read or did with a typed message (named as
a fact), and the handlers on the UI thread update the widgets. No store call runs on the UI
thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import time
from datetime import datetime
from pathlib import Path

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message as TMessage
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from bastion.app import offline
from bastion.app.pack_library import InstalledPack
from bastion.app.session import ChatSession, PendingTurn
from bastion.models import compute
from bastion.models.discovery import ModelInfo
from bastion.models.engine import TurnStats
from bastion.storage.schema import Conversation, Message, SearchHit, SourceRef
from bastion.tui.compositor import CroppedCompositor
from bastion.tui.conversations import ConversationList
from bastion.tui.dialogs import (
    ConfirmScreen,
    ExportOptions,
    ExportScreen,
    ImportRequest,
    ImportScreen,
    ModelScreen,
    PackScreen,
    PromptScreen,
    SearchScreen,
    SettingsChosen,
    SettingsScreen,
    TemplateFilled,
    TemplateScreen,
)
from bastion.tui.documents import (
    AttachmentsBar,
    AttachScreen,
    LibraryScreen,
    SourcesScreen,
    open_source,
)
from bastion.tui.thread import BranchMarks, ThreadView, UpdateCadence
from bastion.tui.widgets import Banner, Composer, MessageBox, StatusBar

# How often streamed text is handed to the UI while the model writes: 21-22 times a second (the
# first text at once), on a steady grid (UpdateCadence). The UI thread's CPU time is taken from
# llama.cpp's threads, so updates are no more frequent than needed for smooth text (20 a
# second), and each must stay cheap (see ThreadView.write); bench/ui.py measures both.
STREAM_INTERVAL_S = 0.046
STATUS_INTERVAL_S = 1.0


class ChatScreen(Screen[None]):
    """Conversations on the left, the chosen one on the right, the composer below."""

    AUTO_FOCUS = "#composer"
    """The composer has focus from the start (keys typed ahead go there, not to the list)."""

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
        # F5/F8, not Ctrl+E/Ctrl+D: the composer (which almost always has focus) uses those
        # for end-of-line and delete-right.
        Binding(
            "f8",
            "delete",
            "Delete",
            id="chat.delete",
            tooltip="Delete this conversation (asks first)",
        ),
        Binding("f3", "settings", "Settings", id="chat.settings", tooltip="Settings"),
        Binding(
            "f5",
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
        # F9/F10: the composer (a TextArea) takes F6/F7 for selecting.
        Binding("f9", "attach", "Attach", id="chat.attach", tooltip="Attach a document"),
        Binding("f10", "library", "Library", id="chat.library", tooltip="Your documents"),
    ]

    # -- what workers report ----------------------------------------------------------------

    class ThreadLoaded(TMessage):
        """The conversation list and the shown branch were read from the session."""

        def __init__(
            self,
            conversations: list[Conversation],
            thread: list[Message],
            marks: BranchMarks,
            scroll_to: str | None = None,
        ) -> None:
            super().__init__()
            self.conversations = conversations
            self.thread = thread
            self.marks = marks
            self.scroll_to = scroll_to

    class TurnPrepared(TMessage):
        """The question is saved and the turn is ready to generate."""

        def __init__(
            self,
            turn: PendingTurn,
            conversations: list[Conversation],
            thread: list[Message],
            marks: BranchMarks,
        ) -> None:
            super().__init__()
            self.turn = turn
            self.conversations = conversations
            self.thread = thread
            self.marks = marks

    class PromptRead(TMessage):
        """Part of the prompt was evaluated (``done`` of ``total`` tokens)."""

        def __init__(self, done: int, total: int) -> None:
            super().__init__()
            self.done = done
            self.total = total

    class GenerationFinished(TMessage):
        """The answer is complete (or stopped) and saved."""

        def __init__(self, message: Message, stats: TurnStats, marks: BranchMarks) -> None:
            super().__init__()
            self.message = message
            self.stats = stats
            self.marks = marks

    class GenerationFailed(TMessage):
        """The turn could not run (context overflow, model error)."""

        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    class ModelLoading(TMessage):
        """A model started loading."""

        def __init__(self, name: str, size: int) -> None:
            super().__init__()
            self.name = name
            self.size = size

    class ModelLoaded(TMessage):
        """A model finished loading."""

        def __init__(self, info: ModelInfo, context_size: int) -> None:
            super().__init__()
            self.info = info
            self.context_size = context_size

    class PacksListed(TMessage):
        """The installed packs were read, for choosing one for a new conversation."""

        def __init__(self, packs: list[InstalledPack]) -> None:
            super().__init__()
            self.packs = packs

    class ModelsListed(TMessage):
        """The models on this machine were found, for choosing one."""

        def __init__(self, models: list[ModelInfo], current: str | None) -> None:
            super().__init__()
            self.models = models
            self.current = current

    class ExportPrepared(TMessage):
        """What the export dialog shows for a conversation was computed."""

        def __init__(self, conversation_id: str, default_path: str, preview: str) -> None:
            super().__init__()
            self.conversation_id = conversation_id
            self.default_path = default_path
            self.preview = preview

    def __init__(self, session: ChatSession) -> None:
        super().__init__()
        self._compositor = CroppedCompositor()  # cheap partial updates while streaming
        self.session = session
        self._turn: PendingTurn | None = None
        self._preparing = False
        self._ui: tuple[asyncio.AbstractEventLoop, contextvars.Context] | None = None
        """The event loop and context the answer's text is handed to (see _hand_over)."""
        self._streaming = False
        """Whether text of the turn's answer has been shown."""
        # Kept, not queried: the view is used at every update while an answer streams, and a
        # query walks the conversation list first.
        self._thread_view = ThreadView(id="messages")
        self._thread_view.painter = self.paint_now

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ConversationList(id="sidebar")
            with Vertical(id="main"):
                yield Banner("", id="banner")
                yield self._thread_view
                yield AttachmentsBar(id="attachments")
                yield Composer(id="composer", soft_wrap=True, show_line_numbers=False)
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Banner).display = False
        self.query_one(AttachmentsBar).display = False
        self.query_one(Composer).focus()
        self._poll_guard()
        self.set_interval(1.0, self._poll_guard)
        self.refresh_all()
        self.load_model()

    def on_unmount(self) -> None:
        # A turn cut short by a lock or a quit leaves no object out of garbage collection.
        gc.unfreeze()

    def _poll_guard(self) -> None:
        bar = self.query_one(StatusBar)
        bar.guarded = offline.installed()
        bar.blocked = offline.blocked_count()

    @property
    def thread_view(self) -> ThreadView:
        return self._thread_view

    def paint_now(self, widget: Widget) -> None:
        """Send the rows of ``widget`` marked for a repaint to the terminal now.

        Textual's way (``refresh``) sends a message to the widget, which sends one to the
        screen, which resumes its update timer, which renders at its next tick and then wakes
        the event loop once more for nothing. For the answer being written, twenty times a
        second, that chain cost more of the UI's time than the render itself (on two cores,
        time taken from llama.cpp). Here the screen's compositor renders and sends the marked
        rows at once, with the calls its update timer makes; when a layout is pending, updates
        are batched or the screen is not shown, the usual way is taken.

        Like tui/compositor.py, this uses private parts of the pinned ``textual==8.2.8``;
        ``tests/test_compositor.py`` checks that a terminal fed the screen's updates shows what
        the screen holds while an answer streams, so an upgrade that changes them fails there.
        """
        if self._layout_required or self.app._batch_count or not self.is_current:
            widget.refresh()
            return
        self._compositor.update_widgets(self._dirty_widgets | {widget})
        self._compositor_refresh()

    @property
    def generating(self) -> bool:
        """Whether an answer is being prepared or written."""
        return self._preparing or self._turn is not None

    def stop_generation(self) -> None:
        """Ask the answer being written to stop (it is kept, marked stopped)."""
        if self._turn is not None:
            self._turn.cancel.set()

    # -- reading (workers) ------------------------------------------------------------------

    def _marks(self, thread: list[Message]) -> BranchMarks:
        """Branch positions of the messages that have alternatives (reads the store)."""
        if self.session.incognito:
            return {}
        marks: BranchMarks = {}
        for m in thread:
            pos, count = self.session.branch_position(m.id)
            if count > 1:
                marks[m.id] = (pos, count)
        return marks

    def _loaded(self, scroll_to: str | None = None) -> ThreadLoaded:
        thread = list(self.session.thread)
        return self.ThreadLoaded(
            self.session.conversations(), thread, self._marks(thread), scroll_to
        )

    @work(thread=True, group="store", exit_on_error=False)
    def refresh_all(self, scroll_to: str | None = None) -> None:
        """Re-read the conversation list and the branch marks of the shown thread."""
        self.post_message(self._loaded(scroll_to))

    @on(ThreadLoaded)
    async def _thread_loaded(self, event: ThreadLoaded) -> None:
        await self._show(event.conversations, event.thread, event.marks, event.scroll_to)

    async def _show(
        self,
        conversations: list[Conversation],
        thread: list[Message],
        marks: BranchMarks,
        scroll_to: str | None = None,
    ) -> None:
        await self.query_one(ConversationList).show(
            conversations, self.session.conversation, incognito=self.session.incognito
        )
        await self.thread_view.show(thread, marks, scroll_to)
        self._update_banner()
        self.query_one(AttachmentsBar).show(self.session.documents)

    def _update_banner(self) -> None:
        banner = self.query_one(Banner)
        notes = []
        if self.session.incognito:
            notes.append(
                "🕶 Incognito: this conversation lives only in memory and is never written to disk."
            )
        warning = self.session.vault.rollback_warning if self.session.vault else None
        if warning:
            notes.append(f"⚠ {warning}")
        pack = self.session.pack
        if pack is not None:
            notes.append(f"{pack.name}: {pack.disclaimer}")
        banner.set_class(pack is not None, "-pack")
        banner.update("\n".join(escape(n) for n in notes))
        banner.display = bool(notes)
        self.query_one(StatusBar).pack = f"{pack.name} {pack.version}" if pack else None

    # -- model ------------------------------------------------------------------------------

    @work(thread=True, group="model", exclusive=True, exit_on_error=False)
    def load_model(self, info: ModelInfo | None = None) -> None:
        info = info or self.session.model_for_conversation()
        self.post_message(self.ModelLoading(info.name, info.file_size))
        engine = self.session.load_model(info)
        self.post_message(self.ModelLoaded(info, engine.n_ctx))

    @on(ModelLoading)
    def _model_loading(self, event: ModelLoading) -> None:
        size = f"{event.size / 1e6:,.0f} MB" if event.size < 1e9 else f"{event.size / 1e9:.1f} GB"
        self.query_one(StatusBar).state = f"loading {event.name} ({size})…"

    @on(ModelLoaded)
    def _model_loaded(self, event: ModelLoaded) -> None:
        bar = self.query_one(StatusBar)
        info = event.info
        bar.model = f"{info.name} · {info.quantization or '?'}"
        if not info.chat_template:
            bar.model += " · no chat template: fallback format"
        bar.context_size = event.context_size
        bar.state = ""

    # -- sending ----------------------------------------------------------------------------

    @on(Composer.DraftPaused)
    def _draft_paused(self, event: Composer.DraftPaused) -> None:
        """With a pack or documents, prepare the sources for the draft once typing pauses."""
        if (self.session.pack is not None or self.session.documents) and not self.generating:
            self._prefetch(event.text)

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
        self._start_turn()
        self.prepare(text, editing)

    def _slash_command(self, text: str) -> bool:
        """Open the form of a pack template named by ``/id``; False to send ``text`` as is."""
        pack = self.session.pack
        name = text[1:].split(maxsplit=1)[0] if len(text) > 1 else ""
        if pack is None or not name:
            return False
        if name in ("help", "templates"):
            listed = ", ".join(f"/{t.id} ({t.title})" for t in pack.templates)
            self.notify(
                escape(listed) or "This pack has no templates.", title="Templates", timeout=12
            )
            return True
        template = next((t for t in pack.templates if t.id == name), None)
        if template is None:
            self.notify(f"No template /{escape(name)}; /help lists them.", severity="warning")
            return True
        self.use_template(template.id)
        return True

    def use_template(self, template_id: str) -> None:
        """Ask for a template's values, then send the filled-in message."""
        pack = self.session.pack
        if pack is None or self.generating:
            return

        def done(result: TemplateFilled | None) -> None:
            if result is not None and not self.generating:
                self._start_turn()
                self.prepare(result.text, None, result.lookup)

        self.app.push_screen(TemplateScreen(pack.template(template_id)), done)

    def _start_turn(self) -> None:
        """Mark a turn as under way (until it is prepared, nothing else may start)."""
        self._preparing = True
        self.query_one(StatusBar).state = "preparing…"

    def _post_prepared(self, turn: PendingTurn | None) -> None:
        """Report a prepared turn (or that there was none to prepare)."""
        if turn is None:
            self.post_message(self.GenerationFailed(""))
            return
        thread = list(self.session.thread)
        self.post_message(
            self.TurnPrepared(turn, self.session.conversations(), thread, self._marks(thread))
        )

    @work(thread=True, group="turn", exit_on_error=False)
    def prepare(self, text: str, editing: str | None, lookup: str | None = None) -> None:
        try:
            turn = self.session.edit(editing, text) if editing else self.session.send(text, lookup)
        except Exception as exc:  # the vault could not save the question: one line
            self.post_message(self.GenerationFailed(str(exc) or type(exc).__name__))
            return
        self._post_prepared(turn)

    @on(TurnPrepared)
    async def _turn_prepared(self, event: TurnPrepared) -> None:
        self._preparing = False
        self._turn = event.turn
        self._streaming = False
        self._ui = (asyncio.get_running_loop(), contextvars.copy_context())
        await self._show(event.conversations, event.thread, event.marks)
        cautions = [n for n in event.turn.notices if n.action == "caution"]
        await self.thread_view.begin_answer(cautions)
        waiting = self.session.engine is None and event.turn.response is None
        self.query_one(StatusBar).state = (
            "waiting for the model to load… (Esc stops)" if waiting else "reading the prompt…"
        )
        # A blinking cursor redraws the screen twice a second; while the model writes, every
        # redraw takes CPU from it (two cores: the UI thread competes with llama.cpp's).
        self.query_one(Composer).cursor_blink = False
        # The objects alive now (the app, the conversation, the model) are left out of the
        # garbage collector's full collections until the turn ends: a full collection scans
        # every object of the app and stalled the UI for 60-150 ms while the model wrote.
        gc.freeze()
        self.generate(event.turn)

    @work(thread=True, group="generate", exclusive=True, exit_on_error=False)
    def generate(self, turn: PendingTurn) -> None:
        # On the thread that runs llama.cpp, so that the answer is computed inline instead of
        # handed over token by token (see bastion.models.compute); this worker waits.
        compute.run(self._write_answer, turn)

    def _write_answer(self, turn: PendingTurn) -> None:
        """(Compute thread) Generate the answer, handing its text to the UI as it comes."""
        shown = 0.0

        def progress(done: int, total: int) -> None:
            nonlocal shown
            now = time.monotonic()
            if now - shown >= 0.1 or done == total:
                shown = now
                self.post_message(self.PromptRead(done, total))

        def reading(done: int, total: int) -> None:  # a long document, part by part
            self.app.call_from_thread(self._document_progress, done, total)

        turn.progress = reading
        try:
            gen = self.session.generate(turn, progress)
        except Exception as exc:  # context overflow, model errors: one line for the user
            self.post_message(self.GenerationFailed(str(exc) or type(exc).__name__))
            return
        pieces: list[str] = []
        batch: list[str] = []
        # The first piece is shown at once (time to first token matters). The speed in the
        # status line changes once a second: repainting it with every batch would widen each
        # screen update from the answer's last lines to everything between them and the status.
        first = rated = 0.0
        cadence = UpdateCadence(STREAM_INTERVAL_S)
        for piece in gen:
            pieces.append(piece)
            batch.append(piece)
            now = time.monotonic()
            first = first or now
            if cadence.due(now):
                n, rate = 0, 0.0
                if not rated or now - rated >= STATUS_INTERVAL_S:
                    n = gen.stats.generated_tokens
                    rate = (n - 1) / (now - first) if n > 1 and now > first else 0.0
                    rated = now if rate else 0.0  # the speed is shown as soon as known
                self._hand_over("".join(batch), n, rate)
                batch.clear()
        if batch:
            self._hand_over("".join(batch))
        saved = self.session.finish(turn, "".join(pieces))
        self.post_message(
            self.GenerationFinished(saved, gen.stats, self._marks(list(self.session.thread)))
        )

    @on(PromptRead)
    def _prompt_read(self, event: PromptRead) -> None:
        if self._turn is not None and not self._streaming:  # not after the answer's text
            self.query_one(
                StatusBar
            ).state = f"reading the prompt: {event.done:,}/{event.total:,} tokens (Esc stops)"

    def _hand_over(self, text: str, tokens: int = 0, tokens_per_s: float = 0.0) -> None:
        """(Worker thread) Give a batch of the answer's text to the UI thread.

        Not a Textual message: a message goes through the screen's queue, the lookup of its
        handlers and an idle event, which cost the UI thread twice the CPU time of a callback
        on its event loop (0.64 ms against 0.32 ms measured; twenty times a second, on two
        cores, that time is taken from llama.cpp). Callbacks run in the order they were
        handed over, all before the turn's end message (handed over the same way, after).
        """
        assert self._ui is not None
        loop, context = self._ui
        loop.call_soon_threadsafe(self._show_streamed, text, tokens, tokens_per_s, context=context)

    def _show_streamed(self, text: str, tokens: int, tokens_per_s: float) -> None:
        """(UI thread) Show more of the answer; ``tokens`` generated so far, at
        ``tokens_per_s`` (0 when the status need not change)."""
        try:
            self._streaming = True
            self.thread_view.write(text)
            if tokens:
                rate = f" {tokens_per_s:.0f} tok/s" if tokens_per_s else ""
                self.query_one(StatusBar).state = f"writing…{rate} (Esc stops)"
        except Exception as error:  # as for a message handler: the app shows it and stops
            self.app._handle_exception(error)

    def _end_turn(self, state: str = "") -> None:
        gc.unfreeze()
        self._preparing = False
        self._turn = None
        self.query_one(Composer).cursor_blink = True
        self.query_one(StatusBar).state = state

    @on(GenerationFinished)
    async def _finished(self, event: GenerationFinished) -> None:
        await self.thread_view.finish(event.message, event.stats)
        self._end_turn("stopped" if event.message.meta.stop_reason == "cancelled" else "")
        self.thread_view.apply_marks(event.marks)
        stats = event.stats
        bar = self.query_one(StatusBar)
        if stats.prompt_tokens:  # a pack's fixed safety response involves no model
            bar.tokens_per_s = stats.decode_tokens_per_s
            bar.ttft = stats.time_to_first_token_s
            bar.context_used = stats.context_used
            bar.context_size = stats.context_size
        if not self.session.incognito:
            self.refresh_all()

    @on(GenerationFailed)
    async def _failed(self, event: GenerationFailed) -> None:
        await self.thread_view.fail()
        self._end_turn()
        if event.reason:
            self.notify(escape(event.reason), title="Could not answer", severity="error", timeout=8)

    # -- actions ----------------------------------------------------------------------------

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
        self._list_packs()

    @work(thread=True, group="store", exit_on_error=False)
    def _list_packs(self) -> None:
        self.post_message(self.PacksListed(self.session.available_packs()))

    @on(PacksListed)
    def _packs_listed(self, event: PacksListed) -> None:
        self.app.push_screen(PackScreen(event.packs), self._start_with)

    def _start_with(self, pack_id: str | None) -> None:
        if pack_id is None:  # the picker was closed: nothing changes
            return
        self._new_conversation(pack_id or None)

    @work(thread=True, group="store", exit_on_error=False)
    def _new_conversation(self, pack_id: str | None, incognito: bool = False) -> None:
        self.session.new_conversation(pack_id=pack_id, incognito=incognito)
        self.post_message(self._loaded())

    def action_incognito(self) -> None:
        if self.generating:
            return
        self._new_conversation(None, incognito=True)
        self.query_one(Composer).focus()

    def action_regenerate(self) -> None:
        if self.generating or not self.session.thread:
            return
        self._start_turn()
        self._regenerate()

    @work(thread=True, group="turn", exit_on_error=False)
    def _regenerate(self) -> None:
        try:
            turn = self.session.regenerate()
        except Exception as exc:
            self.post_message(self.GenerationFailed(str(exc) or type(exc).__name__))
            return
        self._post_prepared(turn)

    def action_search(self) -> None:
        self.app.push_screen(SearchScreen(self.session), self._open_hit)

    def _open_hit(self, hit: SearchHit | None) -> None:
        if hit is not None:
            self.open_conversation(hit.conversation_id, hit.message_id)

    @work(thread=True, group="store", exit_on_error=False)
    def open_conversation(self, conv_id: str, at_message: str | None = None) -> None:
        self.session.open(conv_id, at_message)
        self.post_message(self._loaded(at_message))
        engine = self.session.engine
        wanted = self.session.conversation.model_name if self.session.conversation else None
        if wanted and self.session.model and wanted != self.session.model.name and engine:
            self.load_model()

    @on(ConversationList.Chosen)
    def _chosen(self, event: ConversationList.Chosen) -> None:
        if self.generating:
            self.notify("Stop the answer first (Esc).", severity="warning")
            return
        self.open_conversation(event.conversation_id)

    def action_models(self) -> None:
        self._list_models()

    @work(thread=True, group="model", exit_on_error=False)
    def _list_models(self) -> None:
        models = self.session.available_models()
        current = self.session.model.name if self.session.model else None
        self.post_message(self.ModelsListed(models, current))

    @on(ModelsListed)
    def _models_listed(self, event: ModelsListed) -> None:
        self.app.push_screen(ModelScreen(event.models, event.current), self._model_chosen)

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
        self.post_message(self._loaded())

    def action_settings(self) -> None:
        themes = sorted(self.app.available_themes)
        screen = SettingsScreen(self.session.settings, self.session.sampling(), themes)
        self.app.push_screen(screen, self._settings_chosen)

    def _settings_chosen(self, result: SettingsChosen | None) -> None:
        if result is None:
            return
        self.app.theme = result.settings.theme
        self._save_settings(result)

    @work(thread=True, group="store", exit_on_error=False)
    def _save_settings(self, chosen: SettingsChosen) -> None:
        self.session.save_settings(chosen.settings)
        self.session.set_sampling(chosen.sampling)
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
        # A neutral name: a title in a file name would be plaintext on disk.
        default = str(Path.home() / f"bastion-{datetime.now():%Y%m%d-%H%M%S}.age")
        self.post_message(self.ExportPrepared(cid, default, preview))

    @on(ExportPrepared)
    def _export_prepared(self, event: ExportPrepared) -> None:
        cid = event.conversation_id

        def done(options: ExportOptions | None) -> None:
            if options is not None:
                self._export(cid, options)

        self.app.push_screen(ExportScreen(event.default_path, event.preview), done)

    @work(thread=True, group="store", exit_on_error=False)
    def _export(self, cid: str, options: ExportOptions) -> None:
        path = Path(options.path).expanduser()
        self.session.export_conversation(
            cid,
            path,
            passphrase=options.passphrase,
            recipients=list(options.recipients),
            form=options.form,
            redact=options.redact,
        )
        self.app.call_from_thread(self.notify, f"Exported (encrypted) to {escape(str(path))}")

    def action_import(self) -> None:
        def done(result: ImportRequest | None) -> None:
            if result is not None:
                self._import(result)

        self.app.push_screen(ImportScreen(), done)

    @work(thread=True, group="store", exit_on_error=False)
    def _import(self, request: ImportRequest) -> None:
        result = self.session.import_file(Path(request.path).expanduser(), request.passphrase)
        self.post_message(self._loaded())
        what = escape(result.verification.describe())
        self.app.call_from_thread(
            self.notify, f"Imported {len(result.ids)} conversation(s), marked imported: {what}"
        )

    # -- message actions --------------------------------------------------------------------

    @on(MessageBox.ActionRequested)
    def _message_action(self, event: MessageBox.ActionRequested) -> None:
        msg = event.box.message
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
            message_id = msg.id

            def done(yes: bool | None) -> None:
                if yes:
                    self._delete_message(message_id)

            self.app.push_screen(
                ConfirmScreen("Delete this message and everything after it?"), done
            )
        elif event.action == "branch":
            self._switch_branch(msg.id, event.step)
        elif event.action == "sources":
            self._open_sources(msg)

    # -- documents (tui/documents.py) ---------------------------------------------------------

    def action_attach(self) -> None:
        if not self.generating:
            self.app.push_screen(AttachScreen(), self._attach_chosen)

    def _attach_chosen(self, path: str | None) -> None:
        if path:
            self.query_one(StatusBar).state = "reading the document…"
            self._attach_document(path)

    @work(thread=True, group="store", exit_on_error=False)
    def _attach_document(self, ref: str) -> None:
        try:
            doc = self.session.attach(ref)
        except Exception as exc:  # unreadable, hostile, too large: one line
            self.app.call_from_thread(self.notify, escape(str(exc)), severity="error")
        else:
            self.app.call_from_thread(self.notify, f"Attached {escape(doc.title)}.")
        self.post_message(self._loaded())
        self.app.call_from_thread(setattr, self.query_one(StatusBar), "state", "")

    def _document_progress(self, done: int, total: int) -> None:
        state = f"reading the document: part {min(done + 1, total)} of {total} (Esc stops)"
        self.query_one(StatusBar).state = state

    def action_library(self) -> None:
        def closed(_: None) -> None:
            self.refresh_all()

        self.app.push_screen(LibraryScreen(self.session), closed)

    def _open_sources(self, msg: Message) -> None:
        sources = [s for s in msg.meta.sources if s.document_id]
        if not sources:
            self.notify("This message cites no document.")
        elif len(sources) == 1:
            open_source(self, self.session, sources[0])
        else:

            def chosen(source: SourceRef | None) -> None:
                if source is not None:
                    open_source(self, self.session, source)

            self.app.push_screen(SourcesScreen(sources), chosen)

    def _clear_clipboard(self) -> None:
        self.app.copy_to_clipboard("")
        self.notify("Clipboard cleared.")

    @work(thread=True, group="store", exit_on_error=False)
    def _delete_message(self, message_id: str) -> None:
        self.session.delete_message(message_id)
        self.post_message(self._loaded())

    @work(thread=True, group="store", exit_on_error=False)
    def _switch_branch(self, message_id: str, step: int) -> None:
        sibs = [s.id for s in self.session.siblings(message_id)]
        self.session.switch_branch(message_id, step)
        target = sibs[(sibs.index(message_id) + step) % len(sibs)] if len(sibs) > 1 else None
        self.post_message(self._loaded(target or message_id))
