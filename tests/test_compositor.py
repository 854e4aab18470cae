"""The chat screen's compositor renders exactly what Textual's own would, with less work."""

from __future__ import annotations

import random
import re

from textual._compositor import Compositor
from textual.geometry import Region
from textual.widget import Widget

from bastion.tui.app import BastionApp
from bastion.tui.compositor import CroppedCompositor
from bastion.tui.thread import ThreadView
from bastion.tui.widgets import MessageBox
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
