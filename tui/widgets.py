"""Reusable widgets of the chat screen."""

from __future__ import annotations

from collections.abc import Callable

from rich.cells import cell_len
from rich.markup import escape
from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.geometry import Region, Size
from textual.message import Message as TMessage
from textual.reactive import reactive
from textual.strip import Strip
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Collapsible, Label, Markdown, Static, TextArea

from bastion.app.terminal import visible
from bastion.app.turn import sources_line
from bastion.storage.schema import Message, SafetyNotice


def highlight_snippet(snippet: str) -> str:
    """Rich markup for an FTS snippet whose matches are marked with [ and ]."""
    out = []
    for i, part in enumerate(snippet.replace("]", "[").split("[")):
        out.append(f"[b reverse]{escape(part)}[/]" if i % 2 else escape(part))
    return "".join(out)


TAIL_SLACK = 4
"""Fewest blank rows kept under the text being written, so that the screen is laid out again
only every few rows instead of at every new row."""

TAIL_SLACK_MAX = 12
"""Most blank rows kept: the spare rows double each time the text outgrows them, so a long
answer is laid out again a few times, not once every few rows."""


class StreamTail(Widget):
    """An answer being written, as plain text (sanitised by the caller).

    Built for many small updates: :meth:`append` wraps again only the line that grew and
    repaints only the rows that changed, so adding a few words costs a one-row repaint, the
    same at the first word as at the thousandth. The widget keeps spare rows when it grows, so
    the screen is laid out again (which measures and repaints the whole conversation) only a
    few times per answer. Markdown is rendered once, when the answer is finished: mounting
    Markdown blocks while the model writes stalls the UI for tens of milliseconds each.
    """

    def __init__(self, *, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        # Sized by get_content_height. An inline style, not DEFAULT_CSS: when the first
        # widget of a class with its own CSS mounts, Textual adds it to the stylesheet and
        # rebuilds the stylesheet's rules, at the start of the first answer.
        self.styles.height = "auto"
        self._lines: list[str] = []
        self._wrapped: list[list[str]] = []
        """The rows of each line of the text at :attr:`_width`."""
        self._rows: list[str] = []
        self._width = 0
        self._height = 0
        """Rows given to the widget in the last layout (text and spare rows)."""
        self._spare = TAIL_SLACK
        self._follow = 0
        self._reserve = 0
        self.painter: Callable[[Widget], None] | None = None
        """Sends the rows :meth:`append` changed to the terminal at once (the chat screen's
        ``paint_now``); without one, Textual's usual refresh."""
        self._style: Style | None = None
        """The text's style in the render under way."""

    def render_lines(self, crop: Region) -> list[Strip]:
        # Textual's visual style: the text's colours over every ancestor's background, kept
        # until the styles change (``rich_style`` computes it again at every call).
        self._style = self.visual_style.rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._style = None

    @property
    def follow_rows(self) -> int:
        """When positive, the widget is at most this many rows and shows the last rows of the
        text: the view follows the end of a long answer without laying the screen out again
        at every few rows (the thread view sets it to its height while it is scrolled to the
        end). 0 shows every row."""
        return self._follow

    @follow_rows.setter
    def follow_rows(self, rows: int) -> None:
        if rows != self._follow:
            self._follow = max(rows, 0)
            self._refit()

    @property
    def reserve_rows(self) -> int:
        """The widget's height while the text fits in it (at most :attr:`follow_rows`): the
        room the thread view gives a new answer under its question, so that the screen is not
        laid out again while the answer fills it. 0: only the text's rows and spare rows."""
        return self._reserve

    @reserve_rows.setter
    def reserve_rows(self, rows: int) -> None:
        if rows != self._reserve:
            self._reserve = max(rows, 0)
            self._refit()

    def _refit(self) -> None:
        """Lay the screen out again if the widget's height changes (once it has a width)."""
        if self._width and self._resize():
            self.refresh(layout=True)

    @property
    def _offset(self) -> int:
        """Rows of text above the first row shown."""
        return max(len(self._rows) - self._height, 0)

    @property
    def text(self) -> str:
        return "\n".join(self._lines)

    @property
    def rows(self) -> int:
        """Rows of text at the current width."""
        return len(self._rows)

    def append(self, text: str) -> None:
        """Add ``text`` to the end of what is shown."""
        if not text:
            return
        parts = text.split("\n")
        if self._lines:
            self._lines[-1] += parts[0]
            self._lines.extend(parts[1:])
            grown = len(self._wrapped) - 1  # the line that grew, then the new ones
        else:
            self._lines = parts
            grown = 0
        if not self._width:
            self.refresh(layout=True)  # not laid out yet: wrapped in get_content_height
            return
        first_row = len(self._rows) - (len(self._wrapped[grown]) if self._wrapped else 0)
        before, offset = self._rows[first_row:], self._offset
        self._wrapped[grown:] = [self._wrap(line) for line in self._lines[grown:]]
        after = [row for rows in self._wrapped[grown:] for row in rows]
        self._rows[first_row:] = after
        if self._resize():
            self.refresh(layout=True)
        elif self._offset != offset:
            self._repaint()  # following the end: every row shown moved up
        else:
            # Words added to a paragraph change its last rows only (wrapping is greedy).
            same = 0
            while same < min(len(before), len(after)) and before[same] == after[same]:
                same += 1
            if changed := max(len(before), len(after)) - same:
                self._repaint(Region(0, first_row + same - offset, self.size.width, changed))

    def _repaint(self, *regions: Region) -> None:
        """Repaint ``regions`` (the whole widget if none) through :attr:`painter` if there is
        one, else with Textual's usual refresh."""
        if self.painter is None:
            self.refresh(*regions)
        else:
            self._set_dirty(*regions)  # what refresh marks for a repaint, without its messages
            self.painter(self)

    def _wrap(self, line: str) -> list[str]:
        if not line:
            return [""]
        return [part.plain for part in Content(line.expandtabs(8)).wrap(self._width)]

    def _rewrap(self, width: int) -> None:
        self._width = width
        self._wrapped = [self._wrap(line) for line in self._lines]
        self._rows = [row for rows in self._wrapped for row in rows]

    def _resize(self) -> bool:
        """Give the widget its text's rows and some spare rows when the text outgrows it (or
        shrinks far below it, after a resize), at most :attr:`follow_rows` rows; return
        whether its height changed."""
        needed, cap, height = len(self._rows), self._follow, self._height
        if cap and needed >= cap:  # following the end of a long text: rows scroll inside
            self._height = cap
            return height != cap
        room = min(self._reserve, cap) if cap else self._reserve
        if needed <= room:  # the text fits in the room it was given
            self._height = room
            return height != room
        if needed <= height <= needed + 2 * self._spare and (not cap or height <= cap):
            return False
        if needed > height and height:
            self._spare = min(2 * self._spare, TAIL_SLACK_MAX)
        wanted = needed + self._spare if needed else 0
        self._height = min(wanted, cap) if cap else wanted
        return self._height != height

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if width != self._width:
            self._rewrap(width)
        self._resize()
        return self._height

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        if width != self._width:
            self._rewrap(width)
        style = self._style or self.rich_style
        y += self._offset
        text = self._rows[y] if 0 <= y < len(self._rows) else ""
        return Strip([Segment(text, style)], cell_len(text)).extend_cell_length(width, style)


class MessageBox(Vertical, can_focus=True):
    """One message: a header line (role, time, branch, stop reason) and its Markdown."""

    BINDINGS = [
        Binding("c", "copy", "Copy", id="message.copy", tooltip="Copy this message"),
        Binding("e", "edit", "Edit", id="message.edit", tooltip="Edit and resend (user messages)"),
        Binding("d", "delete", "Delete", id="message.delete", tooltip="Delete this message"),
        Binding("[", "branch(-1)", "◀ branch", id="message.prev", tooltip="Previous alternative"),
        Binding("]", "branch(1)", "branch ▶", id="message.next", tooltip="Next alternative"),
        Binding("o", "sources", "Open page", id="message.sources", tooltip="Open a cited page"),
    ]

    class ActionRequested(TMessage):
        """The user asked for an action on a message (copy, edit, delete, branch)."""

        def __init__(self, box: MessageBox, action: str, step: int = 0) -> None:
            super().__init__()
            self.box = box
            self.action = action
            self.step = step

    branch: reactive[tuple[int, int]] = reactive((1, 1))
    """(position, count) of this message among its alternatives."""

    def __init__(
        self,
        message: Message | None,
        role: str,
        text: str = "",
        *,
        pending_notes: list[SafetyNotice] | None = None,
        live: bool = False,
    ) -> None:
        super().__init__()
        self.message = message
        self.role = role
        self.text = text
        self.pending_notes: list[SafetyNotice] = pending_notes or []
        self.live = live
        """Being written: the block in progress shows as plain text under the Markdown."""
        """Safety notices to show while the answer is still being written."""
        self.add_class(f"-{role}" if role in ("user", "assistant", "system") else "-other")

    def compose(self) -> ComposeResult:
        yield Label(self._header(), classes="message-header")
        notes = Static(self._notes(), classes="safety-notes")
        notes.display = bool(self._notes())
        yield notes
        reasoning = self._reasoning()
        with Collapsible(title="Reasoning", collapsed=True, classes="message-reasoning") as box:
            yield Static(escape(visible(reasoning, keep_newlines=True)), classes="reasoning-text")
        box.display = bool(reasoning)
        yield Markdown(visible(self.text, keep_newlines=True), classes="message-body")
        if self.live:
            yield StreamTail(classes="live-tail")
        sources = Label(self._sources(), classes="message-sources")
        sources.display = bool(self._sources())
        yield sources

    def _notes(self) -> str:
        if self.role != "assistant":
            return ""  # the rules that fired are shown with the answer
        meta = self.message.meta if self.message else None
        notes = (meta.safety if meta else None) or self.pending_notes
        lines = []
        for n in notes:
            if n.action == "respond" and meta is not None and meta.fixed_response:
                continue  # the message itself is the fixed response
            mark = {"output": "⚠", "citations": "⚑"}.get(n.stage, "ℹ")
            lines.append(f"{mark} {escape(n.message)}")
        return "\n".join(lines)

    def _reasoning(self) -> str:
        """The answer's ``<think>`` reasoning (kept apart from its text), if any."""
        meta = self.message.meta if self.message else None
        return meta.reasoning if meta is not None and self.role == "assistant" else ""

    def _sources(self) -> str:
        meta = self.message.meta if self.message else None
        if self.role != "assistant" or meta is None or not meta.sources:
            return ""
        return f"Sources: {escape(sources_line(meta.sources))}"

    def _header(self) -> str:
        who = {"user": "You", "assistant": "Assistant", "system": "System"}.get(
            self.role, self.role
        )
        parts = [f"[b]{escape(visible(who))}[/b]"]
        if self.message is not None:
            parts.append(f"[dim]{self.message.created.astimezone():%H:%M}[/dim]")
            meta = self.message.meta
            if meta.fixed_response:
                parts.append("[$error]🛑 safety response (the model was not asked)[/]")
            if meta.stop_reason == "cancelled":
                parts.append("[$warning]⏹ stopped[/]")
            if meta.generated_tokens:
                # Validated numbers (MessageMeta): finite, not negative.
                parts.append(
                    f"[dim]{meta.generated_tokens} tok · {meta.decode_tokens_per_s:.1f} tok/s[/dim]"
                )
        pos, count = self.branch
        if count > 1:
            parts.append(f"[$accent]◀ {pos}/{count} ▶[/]")
        return "  ".join(parts)

    def watch_branch(self) -> None:
        if self.is_mounted:
            self.query_one(".message-header", Label).update(self._header())

    def finalize(self, message: Message, text: str) -> None:
        """Turn a streamed box into the saved message: one full render of the final text."""
        self.message = message
        self.text = text
        self.query_one(".message-header", Label).update(self._header())
        self.query_one(Markdown).update(visible(text, keep_newlines=True))
        if self.live:
            self.live = False
            self.query_one(".live-tail").remove()
        for selector, content in (
            (".safety-notes", self._notes()),
            (".message-sources", self._sources()),
        ):
            widget = self.query_one(selector, Static)
            widget.update(content)
            widget.display = bool(content)
        reasoning = self._reasoning()
        self.query_one(".reasoning-text", Static).update(escape(reasoning))
        self.query_one(".message-reasoning", Collapsible).display = bool(reasoning)

    def action_copy(self) -> None:
        self.post_message(self.ActionRequested(self, "copy"))

    def action_sources(self) -> None:
        self.post_message(self.ActionRequested(self, "sources"))

    def action_edit(self) -> None:
        self.post_message(self.ActionRequested(self, "edit"))

    def action_delete(self) -> None:
        self.post_message(self.ActionRequested(self, "delete"))

    def action_branch(self, step: int) -> None:
        self.post_message(self.ActionRequested(self, "branch", step))


class Composer(TextArea):
    """The message editor: Enter sends, Ctrl+J inserts a newline."""

    BINDINGS = [
        Binding(
            "enter", "submit", "Send", id="composer.send", tooltip="Send the message", priority=True
        ),
        Binding(
            "ctrl+j", "newline", "Newline", id="composer.newline", tooltip="Insert a line break"
        ),
    ]

    class Submitted(TMessage):
        """The user sent the text in the composer."""

        def __init__(self, composer: Composer, text: str) -> None:
            super().__init__()
            self.composer = composer
            self.text = text

    class DraftPaused(TMessage):
        """Typing paused for :attr:`PAUSE_S` on a non-empty draft (sources can be prepared)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    PAUSE_S = 0.4
    """How long typing must pause before :class:`DraftPaused` is posted."""

    editing: reactive[str | None] = reactive(None)
    """Id of the user message being edited, or None when composing a new one."""

    _pause_timer: Timer | None = None

    def _on_text_area_changed(self, event: TextArea.Changed) -> None:
        if self._pause_timer is not None:
            self._pause_timer.stop()
        self._pause_timer = self.set_timer(self.PAUSE_S, self._paused)

    def _paused(self) -> None:
        self._pause_timer = None
        text = self.text
        if text.strip() and not text.startswith("/"):
            self.post_message(self.DraftPaused(text))

    def action_submit(self) -> None:
        # Enter is a priority binding: it runs before key presses already queued for this
        # widget (fast typing, or type-ahead while the app was busy). Reading the text now
        # would send half a message and lose the rest; read it after those keys.
        self.call_later(self._submit)

    def _submit(self) -> None:
        text = self.text.strip()
        if text:
            self.post_message(self.Submitted(self, text))

    def action_newline(self) -> None:
        self.insert("\n")

    def watch_editing(self, editing: str | None) -> None:
        self.border_title = "Editing a message (Esc cancels)" if editing else None


class StatusBar(Static):
    """Model, pack, speed, context gauge and the offline guard, in one line."""

    model: reactive[str] = reactive("no model")
    """Model name and quantization."""
    pack: reactive[str | None] = reactive(None)
    """Active pack, if any."""
    tokens_per_s: reactive[float] = reactive(0.0)
    """Decode speed of the last answer."""
    ttft: reactive[float] = reactive(0.0)
    """Time to first token of the last answer, in seconds."""
    context_used: reactive[int] = reactive(0)
    """Tokens of the context the last turn used."""
    context_size: reactive[int] = reactive(0)
    """The model's context size in tokens."""
    blocked: reactive[int] = reactive(0)
    """Network attempts the offline guard refused."""
    guarded: reactive[bool] = reactive(False)
    """Whether the offline guard is installed in this process."""
    state: reactive[str] = reactive("")
    """What the app is doing (loading, generating...)."""

    WARN_AT = 0.8

    def render(self) -> str:
        parts = [f"[b]{escape(self.model)}[/b]"]
        if self.pack:
            parts.append(f"pack: {escape(self.pack)}")
        if self.tokens_per_s:
            parts.append(f"{self.tokens_per_s:.1f} tok/s · first token {self.ttft:.2f} s")
        if self.context_size:
            frac = min(1.0, self.context_used / self.context_size)
            filled = round(frac * 10)
            bar = "█" * filled + "░" * (10 - filled)
            gauge = f"ctx {bar} {self.context_used}/{self.context_size}"
            if frac >= self.WARN_AT:
                gauge = f"[$warning]{gauge} nearly full[/]"
            parts.append(gauge)
        if not self.guarded:
            parts.append("[$warning]offline guard not installed[/]")
        elif self.blocked:
            parts.append(f"[$error]offline: {self.blocked} attempts blocked[/]")
        else:
            parts.append("offline: 0 attempts blocked")
        if self.state:  # first: what is happening now must not be cut off at the right
            parts.insert(0, f"[$accent]{escape(self.state)}[/]")
        return "  │  ".join(parts)


class Banner(Static):
    """A notice above the messages (incognito, disclaimer, rollback warning)."""
