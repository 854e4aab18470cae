"""The chat screen's compositor renders exactly what Textual's own would, with less work."""

from __future__ import annotations

import asyncio
import random
import re
import threading
from collections.abc import Iterator
from typing import Any

from rich.cells import cell_len
from textual._compositor import Compositor, CompositorUpdate
from textual.geometry import Region
from textual.widget import Widget

from bastion.models.engine import TurnStats
from bastion.tui.app import BastionApp
from bastion.tui.chat import ChatScreen
from bastion.tui.compositor import CroppedCompositor
from bastion.tui.thread import ThreadView
from bastion.tui.widgets import MessageBox, StatusBar
from tests.fakes import FakeEngine
from tests.test_snapshots import filled_vault  # noqa: F401 - a fixture
from tests.test_tui import settle, unlock

# A cursor move with nothing written after it (Textual's own compositor moves to the start
# of a zero-width piece of a line, at the screen's edge) changes nothing on the screen.
_IDLE_MOVE = re.compile(r"\x1b\[\d+;\d+H(?=\x1b\[\d+;\d+H|\r?\n|$)")


def _output(compositor: Compositor, console, dirty: list[Region]) -> str:
    """What the terminal is sent for an update of ``dirty``."""
    compositor._dirty_regions.update(dirty)
    update = compositor.render_partial_update()
    return _IDLE_MOVE.sub("", update.render_segments(console)) if update is not None else ""


async def test_partial_and_full_updates_are_the_same_as_textuals(filled_vault) -> None:  # noqa: F811
    """Random changed areas of a chat screen with messages, the sidebar, the footer, the
    composer and the status bar: the terminal output is the same byte for byte; and the
    widgets behind the changed area's front widget are not rendered."""
    app = BastionApp()
    async with app.run_test(size=(110, 32)) as pilot:
        await unlock(pilot, app)
        await pilot.click("#conversations")
        await pilot.press("down", "enter")
        await settle(pilot, app)
        app.screen.query_one("#composer").cursor_blink = False
        await pilot.pause(0.1)
        _compare(app)


def _compare(app: BastionApp) -> None:
    screen = app.screen
    ours = screen._compositor
    assert isinstance(ours, CroppedCompositor)
    theirs = Compositor()
    theirs.reflow(screen, screen.size)
    ours.reflow(screen, screen.size)
    console = app.console
    assert ours.render_strips() == theirs.render_strips()
    ours._dirty_regions.clear()
    theirs._dirty_regions.clear()
    width, height = screen.size
    rng = random.Random(7)
    for _ in range(200):
        dirty = []
        for _ in range(rng.randint(1, 3)):
            x, y = rng.randrange(width), rng.randrange(height)
            w, h = rng.randint(1, width - x), rng.randint(1, min(6, height - y))
            dirty.append(Region(x, y, w, h))
        assert _output(ours, console, dirty) == _output(theirs, console, dirty), dirty

    rendered: list[Widget] = []
    box = screen.query_one(ThreadView).query(MessageBox).last()
    body = box.children[-2] if len(box.children) > 1 else box
    region = ours.visible_widgets[body][0]
    originals = {}
    for widget in ours.visible_widgets:
        originals[widget] = widget.render_lines

        def spy(crop, widget=widget):
            rendered.append(widget)
            return originals[widget](crop)

        widget.render_lines = spy  # type: ignore[method-assign]
    try:
        _output(ours, console, [Region(region.x, region.y, region.width, 1)])
    finally:
        for widget, original in originals.items():
            widget.render_lines = original  # type: ignore[method-assign]
    assert rendered and len(rendered) <= 2, [type(w).__name__ for w in rendered]


class _Terminal:
    """The text a terminal shows after the app's screen updates: cursor moves and characters
    (styles and other sequences are ignored)."""

    _TOKEN = re.compile(
        r"\x1b\[(\d+);(\d+)H|\x1b\[[0-9;:?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|[\r\n]|."
    )

    def __init__(self, width: int, height: int) -> None:
        self.rows = [[" "] * width for _ in range(height)]
        self.x = self.y = 0

    def feed(self, data: str) -> None:
        for m in self._TOKEN.finditer(data):
            token = m.group(0)
            if m.group(1):
                self.y, self.x = int(m.group(1)) - 1, int(m.group(2)) - 1
            elif token.startswith("\x1b") or token in "\r\n":
                continue
            else:
                width = cell_len(token)
                if 0 <= self.y < len(self.rows) and 0 <= self.x < len(self.rows[0]):
                    self.rows[self.y][self.x] = token
                    for x in range(self.x + 1, min(self.x + width, len(self.rows[0]))):
                        self.rows[self.y][x] = ""
                self.x += width

    def text(self) -> list[str]:
        return ["".join(row) for row in self.rows]


class _GatedEngine(FakeEngine):
    """Writes ``step`` pieces, then waits until the test lets it go on."""

    def __init__(self, pieces: list[str], step: int) -> None:
        super().__init__(tokens=len(pieces))
        self.pieces, self.step = pieces, step
        self.waiting, self.go = threading.Event(), threading.Event()

    def _run(self, stats: TurnStats, cancel: threading.Event | None) -> Iterator[str]:
        for i, piece in enumerate(self.pieces):
            if i and i % self.step == 0:
                self.waiting.set()
                self.go.wait(10)
                self.go.clear()
            stats.generated_tokens = i + 1
            yield piece
        stats.decode_tokens_per_s = 50.0


async def test_streamed_text_reaches_the_terminal(filled_vault) -> None:  # noqa: F811
    """The answer being written is sent to the terminal by the chat screen itself, not through
    Textual's refresh; at every pause of the model, what the terminal shows is what the screen
    holds, while the answer fills its room under the question and then scrolls."""
    app = BastionApp()
    terminal = _Terminal(110, 32)
    display = app._display

    def recording(screen: Any, update: Any) -> None:
        if isinstance(update, CompositorUpdate):
            terminal.feed(update.render_segments(app.console))
        display(screen, update)

    app._display = recording  # type: ignore[method-assign]
    words = [f"w{i % 7}" + ("\n" if i % 23 == 22 else " ") for i in range(700)]
    async with app.run_test(size=(110, 32)) as pilot:
        await unlock(pilot, app)
        await pilot.click("#conversations")
        await pilot.press("down", "enter")
        await settle(pilot, app)
        screen = app.screen
        screen.query_one("#composer").cursor_blink = False
        painted = 0
        paint = screen.paint_now

        def counting(widget: Widget) -> None:
            nonlocal painted
            painted += 1
            paint(widget)

        screen.thread_view.painter = counting
        engine = _GatedEngine(words, 35)
        app.session.engine = engine
        await pilot.click("#composer")
        await pilot.press("h", "i", "enter")
        for _ in range((len(words) - 1) // engine.step):
            assert await asyncio.to_thread(engine.waiting.wait, 10)
            engine.waiting.clear()
            for _ in range(4):
                await pilot.pause(0.02)
            shown = [strip.text for strip in screen._compositor.render_strips()]
            assert terminal.text() == shown
            # Prompt progress overtaken by the answer's text (it is handed over apart) does
            # not take the status back to "reading the prompt".
            screen.post_message(ChatScreen.PromptRead(5, 10))
            await pilot.pause()
            assert screen.query_one(StatusBar).state.startswith("writing")
            engine.go.set()
        await settle(pilot, app)
        # The answer's updates went through the screen's own painting, one per pause at least.
        assert painted >= (len(words) - 1) // engine.step
