"""Use cases for domain packs: install, import (with trust and upgrade rules), export, and
turns grounded by a pack (its prompt and examples, safety rules and reference sources).

The CLI and the app both go through :func:`prepare_turn` and :func:`answer_notices`, so a pack
behaves the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from app import packs
from app.packs import Pack, PackError, Trust
from models.engine import ChatMessage, Engine
from storage.schema import Message, PackRecord, SourceChunk
from storage.store import NotFoundError, Store

TRUSTED_KEYS = "trusted_pack_keys"
MAX_SOURCES = 3
SOURCE_TOKEN_BUDGET = 240
"""Most tokens the sources of one turn may take (a tenth of a small context at most)."""

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


# -- trust and installation -----------------------------------------------------------------


def trusted_keys(store: Store) -> dict[str, str]:
    """Public keys the user trusts to sign packs, with the name given for each."""
    value = store.get_setting(TRUSTED_KEYS, {})
    return dict(value) if isinstance(value, dict) else {}


def trust_key(store: Store, public_key: str, name: str) -> None:
    """Trust ``public_key`` (``ed25519:...``) as ``name`` for pack signatures.

    Raises:
        PackError: not an Ed25519 public key.
    """
    packs.parse_public_key(public_key)
    keys = trusted_keys(store)
    keys[public_key.strip()] = name
    store.set_setting(TRUSTED_KEYS, keys)


def untrust_key(store: Store, public_key: str) -> None:
    keys = trusted_keys(store)
    if keys.pop(public_key.strip(), None) is None:
        raise NotFoundError("that key is not trusted")
    store.set_setting(TRUSTED_KEYS, keys)


def source_chunks(pack: Pack) -> list[SourceChunk]:
    return [
        SourceChunk(
            pack_id=pack.id, ref_id=c.ref_id, n=c.n, title=c.title, source=c.source, text=c.text
        )
        for c in packs.chunks(pack)
    ]


def save(store: Store, pack: Pack, signer: str | None) -> None:
    """Store ``pack`` (as one self-contained TOML) with its indexed reference chunks."""
    store.save_pack(pack.id, pack.version, pack.name, pack.to_toml(), signer, source_chunks(pack))


def install_builtins(store: Store) -> list[str]:
    """Install the built-in packs that are missing, or older than the ones shipped.

    A pack the user imported under a built-in's id is left alone. Returns the ids installed.
    """
    installed = {r.id: r for r in store.list_packs()}
    done = []
    for pack_id in packs.builtin_ids():
        current = installed.get(pack_id)
        if current is not None and current.signer != packs.BUILTIN_SIGNER:
            continue
        pack = packs.builtin(pack_id)
        if current is not None and packs.version_key(current.version) >= pack.version_key:
            continue
        save(store, pack, packs.BUILTIN_SIGNER)
        done.append(pack_id)
    return done


@dataclass
class InstalledPack:
    """A pack in the vault and how far it is trusted."""

    record: PackRecord
    pack: Pack
    trust: Trust
    signer: str | None
    """Who vouches for it: the trusted key's name, or the unverified name of the signer."""

    @property
    def trust_text(self) -> str:
        if self.trust is Trust.VERIFIED:
            return f"verified: signed by {self.signer}"
        if self.trust is Trust.UNTRUSTED:
            return f"signed by a key you have not trusted (claims to be {self.signer})"
        return self.trust.value


def get(store: Store, pack_id: str) -> InstalledPack:
    """An installed pack, parsed and with its trust status.

    Raises:
        NotFoundError: no such pack.
        PackError: the stored copy no longer validates or its signature does not match.
    """
    record = store.get_pack(pack_id)
    pack = packs.parse(record.source, name=f"pack {pack_id}")
    if record.signer == packs.BUILTIN_SIGNER and pack_id in packs.builtin_ids():
        return InstalledPack(record, pack, Trust.BUILTIN, None)
    trust, signer = packs.verify(pack, trusted_keys(store))
    return InstalledPack(record, pack, trust, signer)


def installed(store: Store) -> list[InstalledPack]:
    return [get(store, r.id) for r in store.list_packs()]


@dataclass
class ImportPlan:
    """What importing a pack file would do; ``apply_import`` carries it out."""

    pack: Pack
    trust: Trust
    signer: str | None
    action: Literal["install", "upgrade", "same", "downgrade"]
    current_version: str | None = None

    @property
    def needs_confirmation(self) -> bool:
        """Replacing an installed pack with an older or equal version asks first."""
        return self.action in ("same", "downgrade")

    def describe(self) -> str:
        what = {
            "install": "new pack",
            "upgrade": f"upgrade from {self.current_version}",
            "same": f"version {self.current_version} is already installed",
            "downgrade": f"older than the installed {self.current_version}",
        }[self.action]
        trust = {
            Trust.VERIFIED: f"verified: signed by {self.signer}",
            Trust.UNTRUSTED: f"signed by an untrusted key (claims to be {self.signer})",
            Trust.UNSIGNED: "unsigned",
            Trust.BUILTIN: "built-in",
        }[self.trust]
        return f"{self.pack.id} {self.pack.version} ({self.pack.name}): {what}; {trust}"


def plan_import(store: Store, pack: Pack) -> ImportPlan:
    """Check a loaded pack against the vault: signature, then version.

    Raises:
        SignatureMismatchError: the pack is signed and the signature does not match.
    """
    trust, signer = packs.verify(pack, trusted_keys(store))
    try:
        current = store.get_pack(pack.id)
    except NotFoundError:
        return ImportPlan(pack, trust, signer, "install")
    old = packs.version_key(current.version)
    action: Literal["upgrade", "same", "downgrade"] = (
        "upgrade" if pack.version_key > old else "same" if pack.version_key == old else "downgrade"
    )
    return ImportPlan(pack, trust, signer, action, current.version)


def apply_import(store: Store, plan: ImportPlan) -> None:
    signer = plan.signer if plan.trust is Trust.VERIFIED else None
    save(store, plan.pack, signer)


# -- grounded turns -------------------------------------------------------------------------


def prefix_messages(pack: Pack) -> list[ChatMessage]:
    """The fixed start of every conversation with ``pack``: system prompt, then examples."""
    out = [ChatMessage(role="system", content=pack.system_prompt.strip(), pinned=True)]
    for ex in pack.examples:
        out.append(ChatMessage(role="user", content=ex.user.strip(), pinned=True))
        out.append(ChatMessage(role="assistant", content=ex.assistant.strip(), pinned=True))
    return out


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
) -> list[SourceChunk]:
    """The best reference chunks for ``question`` that fit in ``budget`` tokens."""
    found = store.pack_sources(pack.id, search_terms(question), limit=MAX_SOURCES)
    chosen, used = [], 0
    for chunk in found:
        cost = count_tokens(chunk.text) + 8
        if used + cost > budget:
            break
        chosen.append(chunk)
        used += cost
    return chosen


def source_dicts(sources: Sequence[SourceChunk]) -> list[dict[str, Any]]:
    """Sources as stored with a message (and listed under the answer)."""
    return [
        {"n": i, "ref_id": s.ref_id, "title": s.title, "source": s.source, "text": s.text}
        for i, s in enumerate(sources, 1)
    ]


@dataclass
class Notice:
    """A safety rule that fired: its fixed message is shown with the answer."""

    rule: str
    stage: str
    action: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "stage": self.stage,
            "action": self.action,
            "message": self.message,
        }


@dataclass
class GroundedTurn:
    """A user message checked and grounded by a pack."""

    user_stats: dict[str, Any] = field(default_factory=dict)
    """Stored with the user's message: the sources it was sent with, the rules that fired."""
    notices: list[Notice] = field(default_factory=list)
    response: str | None = None
    """A ``respond`` rule's fixed answer: when set, the model is not asked."""


def check_question(
    store: Store,
    pack: Pack,
    question: str,
    count_tokens: Callable[[str], int],
    lookup: str | None = None,
) -> GroundedTurn:
    """Run the input safety rules, then find sources (unless a rule answers).

    ``lookup`` is what the references are searched with (default: the question); for a
    template, its values, so that the template's own wording does not pick the sources."""
    turn = GroundedTurn()
    for rule in pack.check(question, "input"):
        turn.notices.append(Notice(rule.id, "input", rule.action, rule.message))
        if rule.action == "respond" and turn.response is None:
            turn.response = rule.message
    if turn.notices:
        turn.user_stats["safety"] = [n.as_dict() for n in turn.notices]
    if turn.response is None:
        sources = find_sources(store, pack, lookup or question, count_tokens)
        if sources:
            turn.user_stats["sources"] = source_dicts(sources)
    return turn


def answer_notices(pack: Pack, answer: str) -> list[Notice]:
    """The output safety rules that fire on a finished answer."""
    return [Notice(r.id, "output", r.action, r.message) for r in pack.check(answer, "output")]


def model_messages(pack: Pack | None, history: Sequence[Message]) -> list[ChatMessage]:
    """What the model sees: the pack's prefix (if any), then the shown branch, each user
    message with the sources it was sent with (so earlier turns render token-identically and
    the KV cache is reused), and without ``respond``-rule answers."""
    out = prefix_messages(pack) if pack is not None else []
    for m in history:
        if pack is not None and m.role == "system":
            continue
        stats = m.stats or {}
        if m.role == "assistant" and stats.get("fixed_response"):
            if out and out[-1].role == "user" and not out[-1].pinned:
                out.pop()  # the question the rule answered: the model never saw it
            continue
        content = m.content
        if m.role == "user" and stats.get("sources"):
            content = with_sources(m.content, stats["sources"])
        out.append(ChatMessage(role=m.role, content=content, pinned=m.pinned, id=m.id))
    return out


def pending_question(question: str, stats: dict[str, Any] | None) -> Message:
    """A question as a message that is not stored (yet): for building a turn before saving."""
    return Message(
        id="pending",
        conversation_id="pending",
        parent_id=None,
        role="user",
        content=question,
        created=datetime.now(UTC),
        stats=stats or None,
    )


def with_sources(question: str, sources: Sequence[dict[str, Any]]) -> str:
    """The user's message as the model sees it when sources were found."""
    lines = ["Sources:"]
    lines += [f"[{s['n']}] {s['text']}" for s in sources]
    lines += ["", f"Question: {question}"]
    return "\n".join(lines)


def sources_line(sources: Sequence[dict[str, Any]]) -> str:
    """``[1, 2] Title; [3] Other title`` for showing under an answer."""
    by_title: dict[str, list[str]] = {}
    for s in sources:
        by_title.setdefault(s["title"], []).append(str(s["n"]))
    return "; ".join(f"[{', '.join(ns)}] {title}" for title, ns in by_title.items())


def warm(engine: Engine, pack: Pack) -> tuple[int, float]:
    """Keep the KV state of the pack's fixed prefix in the engine (blocking)."""
    return engine.remember_prefix(prefix_messages(pack))


__all__ = ["PackError", "check_question", "install_builtins", "model_messages", "plan_import"]
