"""Page-aware chunks: passages that never cross a page and remember their heading."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bastion.app.documents.formats import ParsedPage

MAX_CHARS = 600
"""About 150 tokens: three passages fit a turn's budget with room for the question."""


@dataclass(frozen=True)
class Chunk:
    page: int
    heading: str
    """The headings the passage sits under, outermost first, joined by ` › `."""
    text: str


_SENTENCE = re.compile(r"(?<=[.!?;:])\s+(?=\S)")


def _pieces(text: str, max_chars: int) -> list[str]:
    """``text`` cut at sentence ends (at spaces for a sentence longer than ``max_chars``)."""
    if len(text) <= max_chars:
        return [text]
    out: list[str] = []
    for sentence in _SENTENCE.split(text):
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 2 else max_chars
            out.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            out.append(sentence)
    return out


def chunk_pages(pages: Sequence[ParsedPage], max_chars: int = MAX_CHARS) -> list[Chunk]:
    """Cut ``pages`` into chunks of at most ``max_chars`` characters, paragraph- and
    sentence-aligned, each within one page and tagged with its heading path."""
    out: list[Chunk] = []
    path: list[tuple[int, str]] = []

    def heading() -> str:
        return " › ".join(t for _, t in path)[:300]

    for page in pages:
        current = ""
        for block in page.blocks:
            if block.level:
                if current:
                    out.append(Chunk(page.number, heading(), current))
                    current = ""
                while path and path[-1][0] >= block.level:
                    path.pop()
                path.append((block.level, block.text[:120]))
                continue
            for piece in _pieces(block.text, max_chars):
                if current and len(current) + 2 + len(piece) > max_chars:
                    out.append(Chunk(page.number, heading(), current))
                    current = ""
                current = f"{current}\n{piece}" if current else piece
        if current:
            out.append(Chunk(page.number, heading(), current))
    return out


def page_texts(pages: Sequence[ParsedPage]) -> list[str]:
    """Each page's text as shown to the user (headings on lines of their own)."""
    return [page.text for page in pages]
