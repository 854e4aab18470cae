"""A chat turn: one pipeline with named stages, shared by the app and ``bastion ask``.

    question ─► 1 safety ─► 2 sources ─► (save question) ─► 3 prompt ─► 4 generation
             ─► 5 answer checks ─► (save answer)

1. :func:`check_question`: the pack's input rules. A ``respond`` rule's fixed message *is* the
   answer; the model is neither chosen nor loaded (so it shows even when no model can load).
2. :func:`find_sources`: passages to ground the answer (a pack's references, then the
   attached or chosen documents: :func:`find_document_sources`), within a token budget,
   numbered as the model sees them.
3. :func:`prompt_messages`: what the model sees: the pack's fixed prefix, the shown branch with
   each question carrying the sources it was sent with (so history renders token-identically
   and the KV cache is reused), without questions a rule answered.
4. Generation is the engine's (:meth:`bastion.models.engine.Engine.chat`).
5. :func:`check_answer`: the pack's output rules on the finished answer, then the check of
   its ``[n]`` citations against the passages (:mod:`bastion.app.documents.citations`).

:class:`bastion.app.session.ChatSession` runs the stages in this order and saves the question
(before generation: an acknowledged message is never lost) and the answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bastion.app.documents import citations
from bastion.app.packs import Pack
from bastion.models.engine import ChatMessage
from bastion.storage.schema import DocumentRecord, Message, MessageMeta, SafetyNotice, SourceRef
from bastion.storage.store import Store

MAX_SOURCES = 3
SOURCE_TOKEN_BUDGET = 240
"""Most tokens the sources of one turn may take (a tenth of a small context at most)."""
DOCUMENT_TOKEN_BUDGET = 640
"""Most tokens the passages of the user's documents may take in one turn (three passages)."""

_STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "cannot",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "get",
        "gets",
        "got",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "like",
        "me",
        "might",
        "more",
        "most",
        "must",
        "my",
        "myself",
        "need",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "ought",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "please",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "tell",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "want",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "know",
        "make",
        "use",
        "used",
        "using",
        "thing",
        "things",
        "way",
        "really",
        "much",
        "many",
        "well",
        "still",
        "yes",
        "okay",
        "ok",
        "hi",
        "hello",
        "thanks",
        "thank",
        "one",
        "two",
    ]
)


# -- 1. safety on the question --------------------------------------------------------------


def notices_for(pack: Pack, text: str, stage: str) -> list[SafetyNotice]:
    """The rules of ``pack`` for ``stage`` (``input`` or ``output``) that fire on ``text``,
    ``respond`` rules first; a rule whose uncertain tier alone matched (part of a red flag,
    such as chest pain without the rest) gives its ``partial_message`` as a caution, shown
    above the answer."""
    assert stage in ("input", "output")
    return [
        SafetyNotice(rule=h.rule.id, stage=stage, action=h.action, message=h.message)
        for h in pack.evaluate(text, "input" if stage == "input" else "output")
    ]


def fixed_response(notices: Sequence[SafetyNotice]) -> str | None:
    """The answer a ``respond`` rule gives instead of the model, if one fired."""
    return next((n.message for n in notices if n.action == "respond"), None)


# -- 2. sources -----------------------------------------------------------------------------


def search_terms(question: str, limit: int = 12) -> list[str]:
    """The words of ``question`` worth looking up in the references."""
    seen: list[str] = []
    for word in re.findall(r"[^\W_]+", question.casefold()):
        if len(word) < 3 or word in _STOPWORDS or word.isdigit() or word in seen:
            continue
        seen.append(word)
    return seen[:limit]


def find_sources(
    store: Store,
    pack: Pack,
    question: str,
    count_tokens: Callable[[str], int],
    budget: int = SOURCE_TOKEN_BUDGET,
) -> list[SourceRef]:
    """The best reference passages for ``question`` that fit in ``budget`` tokens, numbered."""
    found = store.pack_sources(pack.id, search_terms(question), limit=MAX_SOURCES)
    chosen: list[SourceRef] = []
    used = 0
    for chunk in found:
        cost = count_tokens(chunk.text) + 8
        if used + cost > budget:
            break
        chosen.append(
            SourceRef(
                n=len(chosen) + 1,
                ref_id=chunk.ref_id,
                title=chunk.title,
                source=chunk.source,
                text=chunk.text,
            )
        )
        used += cost
    return chosen


def find_document_sources(
    store: Store,
    documents: Sequence[DocumentRecord],
    question: str,
    count_tokens: Callable[[str], int],
    budget: int = DOCUMENT_TOKEN_BUDGET,
    first: int = 1,
) -> list[SourceRef]:
    """The best passages of ``documents`` for ``question`` within ``budget`` tokens, numbered
    from ``first``. When no word of the question is found, the documents' first passages
    (what the document is about) stand in."""
    ids = [d.id for d in documents]
    found = store.document_sources(ids, search_terms(question), limit=MAX_SOURCES)
    if not found:
        found = [c for d in documents for c in store.document_chunks(d.id)[:1]][:MAX_SOURCES]
    chosen: list[SourceRef] = []
    used = 0
    for chunk in found:
        text = f"{chunk.heading}: {chunk.text}" if chunk.heading else chunk.text
        cost = count_tokens(text) + 16
        if used + cost > budget and chosen:
            break
        chosen.append(
            SourceRef(
                n=first + len(chosen),
                ref_id=f"{chunk.document_id}:{chunk.n}",
                title=chunk.title,
                text=text,
                document_id=chunk.document_id,
                page=chunk.page if chunk.paged else None,
                sha256=chunk.sha256,
            )
        )
        used += cost
    return chosen


@dataclass
class CheckedQuestion:
    """A user message after stages 1 and 2."""

    meta: MessageMeta = field(default_factory=MessageMeta)
    """Stored with the question: the rules that fired and the sources it is sent with."""

    @property
    def response(self) -> str | None:
        """A ``respond`` rule's fixed answer: when set, the model is not asked."""
        return fixed_response(self.meta.safety)


def check_question(
    store: Store | None,
    pack: Pack | None,
    question: str,
    count_tokens: Callable[[str], int],
    lookup: str | None = None,
    documents: Sequence[DocumentRecord] = (),
) -> CheckedQuestion:
    """Stages 1 and 2: the input rules, then the sources (unless a rule answered): the pack's
    references, then passages of ``documents`` (numbered after them).

    ``lookup`` is what the references are searched with (default: the question); for a
    template, its values, so that the template's own wording does not pick the sources."""
    checked = CheckedQuestion()
    if pack is not None:
        checked.meta.safety = notices_for(pack, question, "input")
    if checked.response is not None or store is None:
        return checked
    sources: list[SourceRef] = []
    if pack is not None:
        sources = find_sources(store, pack, lookup or question, count_tokens)
    if documents:
        sources += find_document_sources(
            store, documents, lookup or question, count_tokens, first=len(sources) + 1
        )
    checked.meta.sources = sources
    return checked


# -- 3. the prompt ----------------------------------------------------------------------------


def prefix_messages(pack: Pack) -> list[ChatMessage]:
    """The fixed start of every conversation with ``pack``: system prompt, then examples."""
    out = [ChatMessage(role="system", content=pack.system_prompt.strip(), pinned=True)]
    for ex in pack.examples:
        out.append(ChatMessage(role="user", content=ex.user.strip(), pinned=True))
        out.append(ChatMessage(role="assistant", content=ex.assistant.strip(), pinned=True))
    return out


def with_sources(question: str, sources: Sequence[SourceRef]) -> str:
    """The user's message as the model sees it when sources were found (a document's
    passages are labelled with their title and page, and the model is asked to cite them)."""
    if any(s.document_id for s in sources):
        lines = ["Sources (cite them as [n]):"]
        lines += [
            f"[{s.n}] ({s.label}) {s.text or ''}" if s.document_id else f"[{s.n}] {s.text or ''}"
            for s in sources
        ]
        lines += ["", f"Question: {question}"]
        return "\n".join(lines)
    lines = ["Sources:"]
    lines += [f"[{s.n}] {s.text or ''}" for s in sources]
    lines += ["", f"Question: {question}"]
    return "\n".join(lines)


def prompt_messages(
    pack: Pack | None, history: Sequence[Message], system: str | None = None
) -> list[ChatMessage]:
    """Stage 3: what the model sees for the shown branch ``history`` (ending with the
    question).

    With a pack: its prefix, then the branch without stored system messages. Without one: the
    ``system`` prompt if given (replacing stored system messages), else the stored ones. Each
    question carries the sources it was sent with; a question a ``respond`` rule answered, and
    that answer, are left out (the model never saw them)."""
    if pack is not None:
        out = prefix_messages(pack)
    elif system:
        out = [ChatMessage(role="system", content=system, pinned=True)]
    else:
        out = []
    for m in history:
        if m.role == "system" and (pack is not None or system):
            continue
        if m.role == "assistant" and m.meta.fixed_response:
            if out and out[-1].role == "user" and not out[-1].pinned:
                out.pop()  # the question the rule answered: the model never saw it
            continue
        content = m.content
        if m.role == "user" and m.meta.sources:
            content = with_sources(m.content, m.meta.sources)
        out.append(ChatMessage(role=m.role, content=content, pinned=m.pinned, id=m.id))
    return out


def unsaved_question(question: str, meta: MessageMeta | None = None) -> Message:
    """A question as a message that is not stored: for building a prompt ahead of time."""
    return Message(
        id="pending",
        conversation_id="pending",
        parent_id=None,
        role="user",
        content=question,
        created=datetime.now(UTC),
        meta=meta or MessageMeta(),
    )


# -- 5. checks on the answer ----------------------------------------------------------------


DOSE_RULE = "dose-check"


def check_answer(
    pack: Pack | None,
    answer: str,
    sources: Sequence[SourceRef] = (),
    question: str | None = None,
) -> list[SafetyNotice]:
    """Stage 5: the output rules that fire on a finished answer; a correction for every
    medicine whose stated dose is above the pack's documented maximum (``question`` names
    the medicine when the answer does not); and, when the answer was grounded on documents,
    the citation check (stage ``citations``: unsupported ``[n]`` and numbers found in no
    source)."""
    notices: list[SafetyNotice] = []
    if pack is not None:
        notices += notices_for(pack, answer, "output")
        for finding in pack.check_doses(answer, question):
            notices.append(
                SafetyNotice(
                    rule=f"{DOSE_RULE}:{finding.limit.id}",
                    stage="output",
                    action="caution",
                    message=finding.message,
                )
            )
    if any(s.document_id for s in sources):
        notices += citations.check(answer, sources, question or "")
    return notices


def sources_line(sources: Sequence[SourceRef]) -> str:
    """``[1, 2] Title; [3] doc.pdf, p. 4`` for showing under an answer."""
    by_title: dict[str, list[str]] = {}
    for s in sources:
        by_title.setdefault(s.label, []).append(str(s.n))
    return "; ".join(f"[{', '.join(ns)}] {title}" for title, ns in by_title.items())
