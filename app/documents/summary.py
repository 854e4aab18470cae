"""Whole-document questions ("summarise this contract"): every page is read, never only the
first ones that fit.

A document that fits the context is given whole, page by page, as numbered passages. A longer
one is summarised map-reduce: its pages are grouped into parts that fit, each part is
summarised by the model (the *map* steps, reported through ``progress`` and stopped by
``cancel``), summaries that still do not fit are summarised again, and the question is
answered from the part summaries, each a numbered source labelled with its first page.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bastion.models.engine import ChatMessage, Engine
from bastion.models.settings import SamplingSettings
from bastion.storage.schema import DocumentRecord, SourceRef
from bastion.storage.store import Store

_WHOLE = re.compile(
    r"\b(summari[sz]e|summary|summarise?|sum up|overview|outline|gist|tl;?dr|key points|"
    r"main points|(what|whats|what's) (is )?(this|the) (\w+ )?(about)|r[ée]sum[ée]|"
    r"zusammenfass\w*|r[ée]sumer)\b",
    re.IGNORECASE,
)

MAP_PROMPT = (
    "Summarise this part of a document in at most five sentences. Keep names, dates, "
    "amounts, numbers and obligations exactly as written. Do not add anything."
)
REDUCE_PROMPT = (
    "These are summaries of consecutive parts of a document. Merge them into one summary of "
    "at most six sentences, keeping names, dates, amounts and numbers exactly."
)


class Cancelled(Exception):
    """The user stopped the summary (Esc, Ctrl+C)."""


def is_whole_document_question(question: str) -> bool:
    """Whether ``question`` asks about a whole document (summary, overview, key points)."""
    return bool(_WHOLE.search(question))


@dataclass
class Part:
    document: DocumentRecord
    first: int
    last: int
    text: str


def _parts(
    store: Store, documents: Sequence[DocumentRecord], budget: int, count: Callable[[str], int]
) -> list[Part]:
    """Every page of ``documents``, grouped into consecutive parts of at most ``budget``
    tokens (a longer page is cut)."""
    parts: list[Part] = []
    for doc in documents:
        current: Part | None = None
        used = 0
        for page in store.document_pages(doc.id):
            text = page.text.strip()
            if not text:
                continue
            cost = count(text)
            while cost > budget:  # one page larger than a part: cut it
                if current is not None:  # the pages before it come first
                    parts.append(current)
                    current, used = None, 0
                cut = len(text) * budget // cost
                head, text = text[:cut], text[cut:]
                parts.append(Part(doc, page.page, page.page, head))
                cost = count(text)
            if current is not None and used + cost > budget:
                parts.append(current)
                current, used = None, 0
            if current is None:
                current = Part(doc, page.page, page.page, text)
            else:
                current.last = page.page
                current.text += "\n\n" + text
            used += cost
        if current is not None:
            parts.append(current)
    return parts


def _pages(part: Part) -> str:
    if not part.document.paged:
        return ""
    return f"p. {part.first}" if part.first == part.last else f"pp. {part.first}–{part.last}"


def _source(n: int, part: Part, text: str) -> SourceRef:
    pages = _pages(part)
    return SourceRef(
        n=n,
        ref_id=f"{part.document.id}:p{part.first}-{part.last}",
        title=part.document.title,
        source=pages,
        text=f"(summary of {pages}) {text}" if pages else f"(summary) {text}",
        document_id=part.document.id,
        page=part.first if part.document.paged else None,
        sha256=part.document.sha256,
    )


def _whole_source(n: int, part: Part) -> SourceRef:
    return SourceRef(
        n=n,
        ref_id=f"{part.document.id}:p{part.first}-{part.last}",
        title=part.document.title,
        text=part.text,
        document_id=part.document.id,
        page=part.first if part.document.paged else None,
        sha256=part.document.sha256,
    )


def prepare(
    engine: Engine,
    store: Store,
    documents: Sequence[DocumentRecord],
    *,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    answer_reserve: int = 400,
    part_tokens: int = 160,
) -> list[SourceRef]:
    """The numbered sources a whole-document answer is written from: the pages themselves
    when they fit the context, else part summaries (map-reduce; each at most
    ``part_tokens`` long). Blocking.

    Raises:
        Cancelled: ``cancel`` was set between two steps.
    """

    def count(text: str) -> int:
        return len(engine.tokenize(text))

    room = engine.n_ctx - answer_reserve - 200
    whole = _parts(store, documents, max(room, 256), count)
    ids = [p.document.id for p in whole]
    fits = len(ids) == len(set(ids))
    if fits and sum(count(p.text) for p in whole) <= room:
        # Each document fits in one part and all together fit: give them whole.
        return [_whole_source(i + 1, p) for i, p in enumerate(whole)]
    part_budget = max(engine.n_ctx // 2 - 160, 256)
    parts = _parts(store, documents, part_budget, count)
    sampling = SamplingSettings(max_tokens=part_tokens, temperature=0.0)
    total = len(parts)
    summaries: list[tuple[Part, str]] = []
    for i, part in enumerate(parts):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        if progress is not None:
            progress(i, total)
        label = f"{part.document.title}, {_pages(part)}".rstrip(", ")
        messages = [
            ChatMessage(role="system", content=MAP_PROMPT),
            ChatMessage(role="user", content=f"Part of {label}:\n\n{part.text}"),
        ]
        generation = engine.chat(messages, sampling, cancel=cancel)
        text = " ".join("".join(generation).split())
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        summaries.append((part, text))
    if progress is not None:
        progress(total, total)
    # Reduce while the part summaries together do not fit the room left for sources.
    while sum(count(t) + 16 for _, t in summaries) > room and len(summaries) > 1:
        merged: list[tuple[Part, str]] = []
        for j in range(0, len(summaries), 4):
            group = summaries[j : j + 4]
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            first, last = group[0][0], group[-1][0]
            span = Part(first.document, first.first, last.last, "")
            if first.document.id != last.document.id:
                span = Part(first.document, first.first, first.last, "")
            body = "\n".join(f"- {t}" for _, t in group)
            messages = [
                ChatMessage(role="system", content=REDUCE_PROMPT),
                ChatMessage(role="user", content=body),
            ]
            text = " ".join("".join(engine.chat(messages, sampling, cancel=cancel)).split())
            merged.append((span, text))
        if len(merged) >= len(summaries):
            break
        summaries = merged
    return [_source(i + 1, part, text) for i, (part, text) in enumerate(summaries)]
