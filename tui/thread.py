"""The thread view: the shown branch of a conversation and the answer being written."""

from __future__ import annotations

from collections.abc import Callable

from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from bastion.app.terminal import visible
from bastion.models.engine import TurnStats
from bastion.storage.schema import Message, SafetyNotice
from bastion.tui.widgets import MessageBox, StreamTail


class UpdateCadence:
    """When to hand streamed text to the UI: the first text at once, then at most once per
    ``interval`` on a steady grid. Each batch leaves with the first token after its due time,
    and the next one is due an interval after that due time (not after the token), so the UI
    gets ``1 / interval`` updates a second whatever the model's pace between tokens, as long
    as it writes at least that many tokens a second. After a pause (a slow token) the grid
    starts again instead of catching up with a burst of updates."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._due: float | None = None

    def due(self, now: float) -> bool:
        """Whether a batch should leave at ``now`` (a monotonic time); if so, it is counted."""
        if self._due is not None and now < self._due:
            return False
        if self._due is None or now >= self._due + self.interval:  # first, or after a pause
            self._due = now + self.interval
        else:
            self._due += self.interval
        return True


BranchMarks = dict[str, tuple[int, int]]
"""Message id -> (position, count) among its alternatives, for messages that have some."""


class ThreadView(VerticalScroll):
    """Messages of the shown branch; streams an answer into one box as text, then renders it."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._stream_box: MessageBox | None = None
        self._tail: StreamTail | None = None
        self.painter: Callable[[Widget], None] | None = None
        """Given to the answer being written (see :attr:`StreamTail.painter`)."""
        self._held: MessageBox | None = None
        """The last answer, kept at the height it was written in (see :meth:`finish`)."""

    @property
    def writing(self) -> bool:
        """Whether an answer is being streamed into the view."""
        return self._stream_box is not None

    def box_for(self, message_id: str) -> MessageBox | None:
        for box in self.query(MessageBox):
            if box.message is not None and box.message.id == message_id:
                return box
        return None

    async def show(
        self, thread: list[Message], marks: BranchMarks, scroll_to: str | None = None
    ) -> None:
        """Replace the view with ``thread`` (system messages are not shown).

        When the view already shows the start of ``thread`` unchanged (a new question was
        added, an answer finished), only the new messages are mounted: rebuilding every
        message's Markdown would stall the UI for a time that grows with the conversation.
        """
        shown = [m for m in thread if m.role != "system"]
        children = list(self.children)
        same_start = len(children) <= len(shown) and all(
            isinstance(box, MessageBox) and not box.live and box.message == message
            for box, message in zip(children, shown, strict=False)
        )
        if not same_start:
            await self.remove_children()
            children = []
        await self.mount_all([MessageBox(m, m.role, m.content) for m in shown[len(children) :]])
        self.apply_marks(marks)
        self.anchor()
        if scroll_to:
            target = self.box_for(scroll_to)
            if target is not None:
                self.scroll_to_widget(target, animate=False)
                target.focus()

    def apply_marks(self, marks: BranchMarks) -> None:
        for mid, mark in marks.items():
            box = self.box_for(mid)
            if box is not None:
                box.branch = mark

    async def begin_answer(self, notes: list[SafetyNotice]) -> None:
        """Add an empty answer box that :meth:`write` streams into."""
        self._release_held()
        box = MessageBox(None, "assistant", "", pending_notes=notes, live=True)
        await self.mount(box)
        self._stream_box = box
        self._tail = box.query_one(StreamTail)
        self._tail.painter = self.painter
        self._tail.follow_rows = self.scrollable_content_region.height
        self.anchor()
        self.call_after_refresh(self._make_room)

    def _make_room(self) -> None:
        """Give the answer the rest of the view under its question: the question moves to the
        top of the view and the answer is written below it, with no layout of the screen (which
        measures and repaints the whole conversation) until it fills the view."""
        tail, box = self._tail, self._stream_box
        if tail is None or box is None or not tail.follow_rows:
            return
        index = self.children.index(box)
        asked = self.children[index - 1] if index else box
        view = self.scrollable_content_region
        # Rows from the question's top to the answer's text, and under the text to the end.
        above = tail.region.y - asked.region.y
        below = box.region.bottom - tail.region.bottom + self.styles.padding.bottom
        tail.reserve_rows = max(view.height - above - below, 0)

    def write(self, text: str) -> None:
        """Show more of the answer. The cost of an update does not grow with the answer or the
        conversation: see :class:`StreamTail`. The answer is shown as plain text until it is
        finished, then rendered as Markdown once (:meth:`finish`)."""
        tail = self._tail
        if tail is None or not text:
            return
        if not tail.follow_rows and self.is_vertical_scroll_end:
            tail.follow_rows = self.scrollable_content_region.height  # back at the end
        # Sanitised piece by piece: a character's escape does not depend on its neighbours.
        tail.append(visible(text, keep_newlines=True))

    def release_anchor(self) -> None:
        """The user scrolled: the answer being written is shown whole, so it can be read from
        its start while the model goes on."""
        super().release_anchor()
        if self._tail is not None:
            self._tail.follow_rows = 0

    def on_resize(self) -> None:
        if self._tail is not None and self._tail.follow_rows:
            self._tail.follow_rows = self.scrollable_content_region.height
            self.call_after_refresh(self._make_room)

    def _release_held(self) -> None:
        if self._held is not None:
            self._held.styles.min_height = None
            self._held = None

    async def _stop_stream(self) -> MessageBox | None:
        box, self._stream_box = self._stream_box, None
        self._tail = None
        return box

    async def finish(self, message: Message, stats: TurnStats) -> None:
        """Freeze the streamed answer as the saved ``message`` (one full render)."""
        box = await self._stop_stream()
        if box is not None:
            # A short answer keeps the room it was written in until the next one, so nothing on
            # the screen moves when it is rendered.
            box.styles.min_height = box.outer_size.height
            self._held = box
            box.finalize(message, message.content)
        if stats.dropped_messages:
            note = Static(
                f"⚠ {len(stats.dropped_messages)} older message(s) did not fit the model's "
                "context and were left out of this answer.",
                classes="context-note",
            )
            await self.mount(note, before=box)

    async def fail(self) -> None:
        """Remove the answer being written (the turn could not run)."""
        box = await self._stop_stream()
        if box is not None:
            await box.remove()
