"""Reference documents cut into chunks small enough to quote in a prompt."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bastion.app.packs.format import Pack


@dataclass(frozen=True)
class Chunk:
    """A piece of a reference document small enough to quote in a prompt."""

    ref_id: str
    n: int
    title: str
    source: str
    text: str


def chunks(pack: Pack, max_chars: int = 240) -> list[Chunk]:
    """Split every reference into paragraph-aligned chunks of at most ``max_chars``
    (a longer paragraph is split at sentence ends)."""
    out: list[Chunk] = []
    for ref in pack.references:
        pieces: list[str] = []
        heading = ""
        for para in re.split(r"\n\s*\n", ref.text or ""):
            para = " ".join(para.split())
            if not para:
                continue
            if para.startswith("#"):
                heading = para.lstrip("# ")
                continue
            sentences = re.split(r"(?<=[.!?])\s+", para)
            current = ""
            for sentence in sentences:
                if current and len(current) + 1 + len(sentence) > max_chars:
                    pieces.append(current)
                    current = ""
                current = f"{current} {sentence}".strip()
            if current:
                pieces.append(f"{heading}: {current}" if heading else current)
        for n, text in enumerate(pieces):
            out.append(Chunk(ref.id, n, ref.title, ref.source, text))
    return out
