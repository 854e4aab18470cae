"""The thread view renders finished blocks once and the block being written as text, and
keeps each streamed update cheap."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import Static

from bastion.storage.schema import Message
from bastion.tui.thread import TAIL_SLACK, ThreadView, frozen_length
from bastion.tui.widgets import MessageBox


def test_frozen_length_stops_at_the_last_finished_block() -> None:
    """Blocks end at blank lines; a line still being written is never frozen."""
    assert frozen_length("") == 0
    assert frozen_length("One paragraph still") == 0
    assert frozen_length("First.\n\nSecond") == len("First.\n\n")
    assert frozen_length("First.\n\nSecond.\n\n") == len("First.\n\nSecond.\n\n")


def test_frozen_length_never_cuts_a_code_block() -> None:
    """A blank line inside a fenced code block does not end a block; closing the fence does."""
    text = "Intro.\n\n```python\nx = 1\n\ny = 2\n"
    assert frozen_length(text) == len("Intro.\n\n")
    closed = text + "```\n"
    assert frozen_length(closed) == len(closed)
    tilde = "~~~\na\n\nb\n~~~\nafter"
    assert frozen_length(tilde) == len("~~~\na\n\nb\n~~~\n")
    # A shorter fence inside a longer one does not close it.
    assert frozen_length("````\n```\n\n") == 0


def _message(i: int, role: str, content: str) -> Message:
    return Message(
        id=f"m{i}",
        conversation_id="c",
        parent_id=f"m{i - 1}" if i else None,
        role=role,
        content=content,
        created=datetime(2026, 1, 1, tzinfo=UTC),
    )


class _ViewApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ThreadView(id="thread")


async def test_streaming_lays_out_again_only_every_few_lines() -> None:
    """An update that adds words to the last line repaints one widget; the conversation is
    laid out again only when the text being written needs more lines (and every line of it
    stays visible)."""
    app = _ViewApp()
    async with app.run_test(size=(60, 30)) as pilot:
        view = app.query_one(ThreadView)
        await view.begin_answer([])
        await pilot.pause()
        tail = view.query_one(".live-tail", Static)
        layouts = 0
        refresh = tail.refresh

        def counting(*regions: Any, repaint: bool = True, layout: bool = False, **kw: Any) -> Any:
            nonlocal layouts
            layouts += layout
            return refresh(*regions, repaint=repaint, layout=layout, **kw)

        tail.refresh = counting  # type: ignore[method-assign]
        writes = 0
        for i in range(240):  # one paragraph being written, a dozen lines at this width
            await view.write(f"w{i % 10} ")
            writes += 1
            await pilot.pause()
            width = tail.content_region.width
            needed = tail.visual.get_height(tail.styles, width)
            assert tail.content_region.height >= needed  # nothing of the text is cut off
        assert needed >= 10
        assert layouts <= needed // TAIL_SLACK + 2, (layouts, needed, writes)


async def test_show_mounts_only_the_messages_not_yet_shown() -> None:
    """A new turn adds its question to the view; the messages already shown keep their
    widgets (their Markdown is not rendered again), and a changed message rebuilds the view."""
    thread = [
        _message(0, "user", "First question?"),
        _message(1, "assistant", "First **answer**."),
        _message(2, "user", "Second question?"),
    ]
    app = _ViewApp()
    async with app.run_test(size=(60, 30)) as pilot:
        view = app.query_one(ThreadView)
        await view.show(thread[:2], {})
        await pilot.pause()
        before = list(view.query(MessageBox))
        await view.show(thread, {})
        await pilot.pause()
        after = list(view.query(MessageBox))
        assert after[:2] == before and len(after) == 3
        assert [b.message.content for b in after if b.message] == [m.content for m in thread]
        edited = [thread[0].model_copy(update={"content": "Edited question?"}), *thread[1:]]
        await view.show(edited, {})
        await pilot.pause()
        rebuilt = list(view.query(MessageBox))
        assert rebuilt[0] is not before[0]
        assert rebuilt[0].message is not None and rebuilt[0].message.content == "Edited question?"
