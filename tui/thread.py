"""The thread view: the shown branch of a conversation and the answer being written."""

from __future__ import annotations

import re

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Markdown, Static

from bastion.app.terminal import visible
from bastion.models.engine import TurnStats
from bastion.storage.schema import Message, SafetyNotice
from bastion.tui.widgets import MessageBox

BranchMarks = dict[str, tuple[int, int]]
"""Message id -> (position, count) among its alternatives, for messages that have some."""

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def frozen_length(text: str) -> int:
    """How much of a Markdown text being written is finished blocks: the offset just after
    the last blank line that is not inside a fenced code block (0 if none)."""
    fence: str | None = None
    offset = done = 0
    for line in text.splitlines(keepends=True):
        offset += len(line)
        if not line.endswith("\n"):
            break  # the line being written
        m = _FENCE.match(line)
        if m:
            mark = m.group(1)
            if fence is None:
                fence = mark[0] * len(mark)
            elif (
                mark[0] == fence[0] and len(mark) >= len(fence) and not line.strip(mark[0] + " \n")
            ):
                fence = None
                done = offset  # a closed code block is finished
            continue
        if fence is None and not line.strip():
            done = offset
    return done


TAIL_SLACK = 3
"""Blank lines kept under the text being written, so that the screen is laid out again only
every few lines instead of at every new line."""


def _update_in_place(widget: Static, text: Text) -> None:
    """Show ``text`` in ``widget``, with a layout pass only when its height must change.

    A layout pass measures every message of the conversation and repaints the whole view
    (it scrolls); most updates add a few words to the last line, and those need only that
    one widget repainted. The widget is given :data:`TAIL_SLACK` spare lines when it grows,
    and shrinks back when a finished block leaves it.
    """
    width = widget.content_region.width
    widget.update(text, layout=False)
    if not width:  # not laid out yet: size to the text (setting a style lays out again)
        widget.styles.height = "auto"
        return
    # As Widget.get_content_height measures it (Textual passes its styles where its
    # annotation says RulesMap).
    needed = widget.visual.get_height(widget.styles, width)  # type: ignore[arg-type]
    rows = widget.content_region.height
    if needed > rows or needed + TAIL_SLACK < rows:
        widget.styles.height = needed + TAIL_SLACK if needed else 0


class ThreadView(VerticalScroll):
    """Messages of the shown branch; streams an answer into one box, then freezes it."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._stream_box: MessageBox | None = None
        self._written = ""
        self._frozen = 0

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
        box = MessageBox(None, "assistant", "", pending_notes=notes, live=True)
        await self.mount(box)
        self._stream_box = box
        self._written = ""
        self._frozen = 0
        self.anchor()

    async def write(self, text: str) -> None:
        """Show more of the answer. The cost of an update does not grow with the answer or the
        conversation: finished blocks are rendered as Markdown once, when they are finished;
        the block being written is shown as plain text until then."""
        box = self._stream_box
        if box is None or not text:
            return
        self._written += text
        # Finished blocks end outside code fences, so the scan can start at the last one.
        frozen = self._frozen + frozen_length(self._written[self._frozen :])
        if frozen > self._frozen:
            block = self._written[self._frozen : frozen]
            await box.query_one(Markdown).append(visible(block, keep_newlines=True))
            self._frozen = frozen
        tail = visible(self._written[self._frozen :], keep_newlines=True)
        _update_in_place(box.query_one(".live-tail", Static), Text(tail))

    async def _stop_stream(self) -> MessageBox | None:
        box, self._stream_box = self._stream_box, None
        self._written = ""
        self._frozen = 0
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
