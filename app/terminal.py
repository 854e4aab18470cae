"""The one output boundary: text from data made safe for a terminal.

Everything Bastion prints that came from data (titles, messages, pack fields, GGUF metadata,
file names, export fields, errors quoting them) goes through :func:`visible`. Characters a
terminal would act on instead of showing are replaced by a visible escape (``\\x1b``,
``\\u202e``), never emitted:

- C0 controls (U+0000-001F: ESC, BEL, CR, BS...), DEL (U+007F) and C1 controls
  (U+0080-009F, among them the 8-bit CSI U+009B and OSC U+009D);
- bidirectional embeddings, overrides and isolates (U+202A-202E, U+2066-2069) and the
  invisible direction marks (U+200E, U+200F, U+061C), which reorder what is shown;
- line and paragraph separators (U+2028, U+2029) and lone surrogates.

Newlines (and tabs) are kept only where a multi-line body is printed (``keep_newlines``);
in a one-line field they are escaped too, so a title cannot forge a line of its own.

:class:`SafeStream` applies the same rule to a whole stream: the CLI wraps stdout and stderr
with it, so nothing that slips past a call site reaches the terminal either.
"""

from __future__ import annotations

import contextlib
import sys
import unicodedata
from collections.abc import Iterator
from typing import Any, TextIO

BIDI_CONTROLS = frozenset(
    [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\u200e", "\u200f", "\u061c"]
)
_LINE_BREAKS = frozenset({"\n", "\t"})


def _escape(c: str) -> str:
    n = ord(c)
    if n <= 0xFF:
        return f"\\x{n:02x}"
    if n <= 0xFFFF:
        return f"\\u{n:04x}"
    return f"\\U{n:08x}"


def is_unsafe(c: str) -> bool:
    """Whether a terminal could act on ``c`` instead of showing it."""
    if c in BIDI_CONTROLS:
        return True
    return unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every unsafe character shown as an escape.

    Args:
        text: anything that came from data (converted with ``str`` if it is not a string).
        keep_newlines: keep ``\\n`` and ``\\t`` (a message body); else they are escaped too.

    Returns:
        Text holding no control character, bidi control or line separator (unless kept).
    """
    if not isinstance(text, str):
        text = str(text)
    if text.isascii() and text.isprintable():
        return text  # the common case, fast
    keep = _LINE_BREAKS if keep_newlines else frozenset()
    return "".join(_escape(c) if c not in keep and is_unsafe(c) else c for c in text)


def has_unsafe(text: str, *, allow: str = "\n\t") -> bool:
    """Whether ``text`` holds a character :func:`visible` would escape (besides ``allow``)."""
    return any(c not in allow and is_unsafe(c) for c in text)


class SafeStream:
    """A text stream that writes through :func:`visible` (newlines and tabs kept)."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(visible(text, keep_newlines=True))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextlib.contextmanager
def guarded_streams() -> Iterator[None]:
    """Route ``sys.stdout`` and ``sys.stderr`` through :class:`SafeStream` for a while."""
    out, err = sys.stdout, sys.stderr
    sys.stdout = SafeStream(out)
    sys.stderr = SafeStream(err)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
