"""The thread view streams an answer as text cheaply, and renders it as Markdown once."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.pilot import Pilot

import bastion.tui
from bastion.models.engine import TurnStats
from bastion.storage.schema import Message
from bastion.tui.thread import ThreadView, UpdateCadence
from bastion.tui.widgets import MessageBox, StreamTail


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
    CSS_PATH = str(Path(bastion.tui.__file__).parent / "bastion.tcss")  # the app's styles

    def compose(self) -> ComposeResult:
        yield ThreadView(id="thread")


@asynccontextmanager
async def _answering(
    size: tuple[int, int], thread: list[Message] | None = None
) -> AsyncIterator[tuple[Pilot, ThreadView, StreamTail]]:
    """A thread view of ``size`` showing ``thread`` with an answer begun (and given its room):
    the pilot, the view, the answer's tail."""
    app = _ViewApp()
    async with app.run_test(size=size) as pilot:
        view = app.query_one(ThreadView)
        if thread:
            await view.show(thread, {})
        await view.begin_answer([])
        await pilot.pause()
        await pilot.pause()
        yield pilot, view, view.query_one(StreamTail)


class _Spy:
    """Records a widget's refresh calls: the rows repainted, and the layouts asked for."""

    def __init__(self, widget: StreamTail) -> None:
        self.layouts = 0
        self.repainted: list[int] = []  # rows of each partial repaint
        refresh = widget.refresh

        def counting(*regions: Any, repaint: bool = True, layout: bool = False, **kw: Any) -> Any:
            self.layouts += layout
            if not layout:
                self.repainted.append(sum(r.height for r in regions) if regions else -1)
            return refresh(*regions, repaint=repaint, layout=layout, **kw)

        widget.refresh = counting  # type: ignore[method-assign]


async def test_streaming_repaints_only_the_rows_that_changed() -> None:
    """Adding words to the answer repaints the row that grew (not the whole block); the
    conversation is laid out again only a few times while the answer grows to a dozen rows,
    and every row of it stays visible."""
    async with _answering((60, 30)) as (pilot, view, tail):
        spy = _Spy(tail)
        for i in range(240):  # one paragraph, a dozen rows at this width
            view.write(f"w{i % 10} ")
            await pilot.pause()
            assert tail.content_region.height >= tail.rows  # nothing of the text is cut off
        assert tail.rows >= 10
        assert spy.layouts <= 4, spy.layouts
        assert spy.repainted and max(spy.repainted) <= 2, spy.repainted
        assert tail.text == "".join(f"w{i % 10} " for i in range(240))


async def test_a_long_answer_is_followed_without_laying_out_the_screen() -> None:
    """Once the answer is taller than the view, the view shows its last rows and is no longer
    laid out again as it grows; when the user scrolls, the whole answer is there to read."""
    async with _answering((60, 20)) as (pilot, view, tail):
        for i in range(40):
            view.write(f"Line {i} of the answer.\n")
            await pilot.pause()
        spy = _Spy(tail)
        for i in range(40, 120):
            view.write(f"Line {i} of the answer.\n")
            await pilot.pause()
        assert spy.layouts == 0
        assert tail.content_region.height <= view.scrollable_content_region.height
        last = tail.content_region.height - 1
        shown = "".join(s.text for s in tail.render_line(last - 1))
        assert "Line 119 of the answer." in shown  # the last line written is on screen
        view.release_anchor()  # what Textual calls when the user scrolls
        await pilot.pause()
        assert tail.content_region.height >= tail.rows == 121
        assert "Line 0 of" in "".join(s.text for s in tail.render_line(0))


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


async def test_the_answer_is_written_under_its_question_without_layouts() -> None:
    """A new answer gets the view's room under its question: the question moves to the top of
    the view, and the answer is written below it with no layout of the screen while it fits
    there. When it is finished, nothing on the screen moves."""
    history = [
        _message(i, "user" if i % 2 == 0 else "assistant", f"Message {i}, " + "words " * 30)
        for i in range(6)
    ]
    question = _message(6, "user", "And the question, " + "asked at some length " * 4)
    async with _answering((60, 30), [*history, question]) as (pilot, view, tail):
        asked = list(view.query(MessageBox))[-2]
        top = view.scrollable_content_region.y
        assert asked.region.y == top  # the question at the top of the view
        spy = _Spy(tail)
        for i in range(120):  # a paragraph of a few rows, then a few short lines
            view.write(f"w{i % 10} " if i < 114 else f"\nline {i}")
            await pilot.pause()
        assert tail.rows >= 10
        assert tail.content_region.height >= tail.rows
        assert spy.layouts == 0
        assert asked.region.y == top  # the view did not scroll while the answer was written
        answer = _message(7, "assistant", tail.text)
        await view.finish(answer, TurnStats())
        await pilot.pause()
        await pilot.pause()
        assert asked.region.y == top  # nor when it was rendered as Markdown


def _sends(token_times: list[float], interval: float) -> list[float]:
    cadence = UpdateCadence(interval)
    return [t for t in token_times if cadence.due(t)]


def test_updates_keep_their_rate_whatever_the_pace_of_tokens() -> None:
    """The UI gets 1/interval updates a second while tokens come faster than that, at any
    pace between tokens: a batch does not wait a whole interval after the previous token
    (with 46 ms, a token every 30 ms would give 17 updates a second instead of 21.7)."""
    for gap in (0.005, 0.018, 0.030, 0.044):
        times = [i * gap for i in range(int(10 / gap))]
        sends = _sends(times, 0.046)
        assert sends[0] == 0.0  # the first text at once
        rate = (len(sends) - 1) / (sends[-1] - sends[0])
        assert 1 / 0.046 * 0.97 <= rate <= 1 / 0.046 * 1.01, (gap, rate)


def test_a_pause_in_the_tokens_brings_no_burst_of_updates() -> None:
    """After the model pauses, updates start again on a new grid, not in a burst catching up."""
    times = [i * 0.01 for i in range(100)] + [1.5 + i * 0.01 for i in range(100)]
    sends = _sends(times, 0.046)
    after = [t for t in sends if t >= 1.5]
    assert after[0] == 1.5
    assert min(b - a for a, b in itertools.pairwise(after)) >= 0.046 / 2 - 1e-9


async def test_the_text_being_written_follows_focus_and_theme() -> None:
    """The answer's text is drawn in the colours of where it is: they change when its message
    is focused (another background) and with the theme (its style is kept between renders)."""
    async with _answering((60, 20)) as (pilot, view, tail):
        view.write("hello there")
        await pilot.pause()

        def drawn() -> Any:
            strip = tail.render_lines(Region(0, 0, tail.size.width, 1))[0]
            return next(seg.style for seg in strip if "hello" in seg.text)

        styles = [drawn()]
        view.query(MessageBox).last().focus()
        await pilot.pause()
        styles.append(drawn())
        app = view.app
        app.theme = "textual-light" if app.theme != "textual-light" else "nord"
        await pilot.pause()
        styles.append(drawn())
        assert styles[-1] == tail.rich_style
        assert len({s.bgcolor for s in styles}) == 3  # each change shown
