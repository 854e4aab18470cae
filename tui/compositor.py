"""A Textual compositor that renders only what an update can show.

When one widget changes (the answer being written), Textual's compositor renders, for every
widget whose *clip* overlaps the changed area, the widget's whole visible region: the screen,
each container above the widget, and every screen-level sibling (footer, composer, status
bar, conversation list), about fourteen widgets of full-height renders for a one-line change.
On a two-core machine that time is taken from llama.cpp's threads.

:class:`CroppedCompositor` renders the same output with less work:

- each widget is rendered only on the lines of the changed area (its clip cropped to them;
  not across, since the compositor cuts a line at widget edges and expects each render to
  start at one);
- a widget hidden in that area by a widget in front of it is not rendered at all. The
  compositor keeps, for each cell, the first strip painted front to back, and every widget's
  strips are opaque (a transparent background is blended from the ancestors' colours when the
  widget renders, not from the strips behind it), so a covered widget's strips are never used.

It overrides one private method of the pinned Textual version (``textual==8.2.8`` in
pyproject.toml); ``tests/test_compositor.py`` checks that screens render identically with
it, so an upgrade that changes the method fails there, not on a user's screen.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual._compositor import Compositor
from textual.geometry import Region
from textual.strip import Strip


class CroppedCompositor(Compositor):
    """A compositor that renders a widget only where it is seen in the area being updated."""

    def _get_renders(
        self, crop: Region | None = None
    ) -> Iterable[tuple[Region, Region, list[Strip]]]:
        intersection = Region.intersection
        contains = Region.contains_region
        covered: list[Region] = []
        for widget, (region, clip) in self.visible_widgets.items():  # front to back
            if crop is not None:
                clip = intersection(clip, Region(clip.x, crop.y, clip.width, crop.height))
            seen = intersection(region, clip)
            x, y, width, height = seen
            if not (width and height):
                continue
            # Only what is inside the changed area is sent to the terminal.
            shown = intersection(seen, crop) if crop is not None else seen
            if not shown.area or any(contains(c, shown) for c in covered):
                continue
            covered.append(seen)
            yield (
                region,
                clip,
                widget.render_lines(Region(x - region.x, y - region.y, width, height)),
            )
