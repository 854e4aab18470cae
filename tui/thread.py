"""The thread view: the shown branch of a conversation and the answer being written."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from bastion.models.engine import TurnStats
from bastion.storage.schema import Message, SafetyNotice
from bastion.tui.widgets import MessageBox

BranchMarks = dict[str, tuple[int, int]]
"""Message id -> (position, count) among its alternatives, for messages that have some."""


class ThreadView(VerticalScroll):
    """Messages of the shown branch; streams an answer into one box, then freezes it."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._stream: MarkdownStream | None = None
        self._stream_box: MessageBox | None = None

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
        """Replace the view with ``thread`` (system messages are not shown)."""
        await self.remove_children()
        await self.mount_all(
            [MessageBox(m, m.role, m.content) for m in thread if m.role != "system"]
        )
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
        box = MessageBox(None, "assistant", "", pending_notes=notes)
        await self.mount(box)
        self._stream_box = box
        self._stream = Markdown.get_stream(box.query_one(Markdown))
        self.anchor()

    async def write(self, text: str) -> None:
        if self._stream is not None:
            await self._stream.write(text)

    async def _stop_stream(self) -> MessageBox | None:
        if self._stream is not None:
            await self._stream.stop()
        self._stream = None
        box, self._stream_box = self._stream_box, None
        return box

    async def finish(self, message: Message, stats: TurnStats) -> None:
        """Freeze the streamed answer as the saved ``message`` (one full render)."""
        box = await self._stop_stream()
        if box is not None:
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
