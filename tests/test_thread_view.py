"""The thread view renders finished blocks once and the block being written as text."""

from __future__ import annotations

from bastion.tui.thread import frozen_length


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
