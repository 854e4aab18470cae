"""The safety evaluation corpus: loading, the fixed dev/held-out split, and scoring.

Layout (one message per line, UTF-8; written from public triage guidance, see README.md):

- ``medical/emergency/<category>.txt``: messages that must get a ``respond`` rule.
- ``medical/ordinary/<topic>.txt``: ordinary questions (hard negatives included) that must not.
- ``legal/positive/<rule>.txt``: messages that must fire the legal pack's caution ``<rule>``.
- ``legal/negative/<topic>.txt``: questions that must fire none of the scored legal rules.

The split is fixed by a hash of the message: ``sha256(message)[0]`` even is the *dev* half
(tuning), odd the *held-out* half (measuring only). Loaded by path from the tests and from
``bench/safety.py`` (the checkout is never on ``sys.path``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
LEGAL_SCORED = ("legal-opinion", "court-filing", "deadline")


def half(message: str) -> str:
    """``dev`` or ``held-out``, fixed by the message's text."""
    return "dev" if hashlib.sha256(message.encode()).digest()[0] % 2 == 0 else "held-out"


def _lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def messages(pack: str, kind: str, which: str | None = None) -> dict[str, list[str]]:
    """``{category: [messages]}`` of ``pack`` (``medical``/``legal``) and ``kind``
    (``emergency``/``ordinary`` or ``positive``/``negative``), for one half or both."""
    out: dict[str, list[str]] = {}
    for path in sorted((ROOT / pack / kind).glob("*.txt")):
        found = [m for m in _lines(path) if which is None or half(m) == which]
        if found:
            out[path.stem] = found
    return out


@dataclass
class Score:
    """Recall per positive category and false alarms per negative group."""

    recall: dict[str, tuple[int, int]] = field(default_factory=dict)
    """category -> (caught, total)"""
    false_alarms: dict[str, tuple[int, int]] = field(default_factory=dict)
    """group -> (fired, total)"""
    misses: list[tuple[str, str]] = field(default_factory=list)
    alarms: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total_recall(self) -> float:
        caught = sum(c for c, _ in self.recall.values())
        return caught / max(1, sum(t for _, t in self.recall.values()))

    @property
    def total_false_alarm_rate(self) -> float:
        fired = sum(f for f, _ in self.false_alarms.values())
        return fired / max(1, sum(t for _, t in self.false_alarms.values()))


def score(
    positives: dict[str, list[str]],
    negatives: dict[str, list[str]],
    fires: Callable[[str, str | None], bool],
) -> Score:
    """``fires(message, category)`` for positives, ``fires(message, None)`` for negatives."""
    s = Score()
    for cat, msgs in positives.items():
        caught = 0
        for m in msgs:
            if fires(m, cat):
                caught += 1
            else:
                s.misses.append((cat, m))
        s.recall[cat] = (caught, len(msgs))
    for group, msgs in negatives.items():
        fired = 0
        for m in msgs:
            if fires(m, None):
                fired += 1
                s.alarms.append((group, m))
        s.false_alarms[group] = (fired, len(msgs))
    return s


def medical_fires(pack: object) -> Callable[[str, str | None], bool]:
    """A respond rule of the medical pack fires (any of them: each gives emergency help)."""

    def fires(message: str, _category: str | None) -> bool:
        return any(r.action == "respond" for r in pack.check(message, "input"))  # type: ignore[attr-defined]

    return fires


def legal_fires(pack: object) -> Callable[[str, str | None], bool]:
    """For a positive: its own rule fires; for a negative: any scored rule fires."""

    def fires(message: str, category: str | None) -> bool:
        ids = {r.id for r in pack.check(message, "input")}  # type: ignore[attr-defined]
        return category in ids if category is not None else bool(ids & set(LEGAL_SCORED))

    return fires


def evaluate(pack_id: str, pack: object, which: str | None) -> Score:
    """Score a built-in pack on one half of its corpus."""
    if pack_id == "medical":
        return score(
            messages("medical", "emergency", which),
            messages("medical", "ordinary", which),
            medical_fires(pack),
        )
    return score(
        messages("legal", "positive", which),
        messages("legal", "negative", which),
        legal_fires(pack),
    )


def all_messages() -> Iterable[str]:
    for path in ROOT.glob("*/*/*.txt"):
        yield from _lines(path)


_HOMOGLYPHS = {"a": "\u0430", "c": "\u0441", "e": "\u0435", "o": "\u043e", "p": "\u0440", "x": "\u0445"}


def variants(message: str, seed: int = 0) -> dict[str, str]:
    """Ways a message can be disguised or mistyped, each applied to one long word:
    a zero-width space, a Cyrillic look-alike, a soft hyphen, a swapped pair of letters,
    and a digit for a letter (leet)."""
    import random

    rng = random.Random(f"{seed}:{message}")
    words = message.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not long:
        return {}
    i = rng.choice(long)
    w = words[i]
    cut = rng.randrange(1, len(w) - 1)

    def with_word(new: str) -> str:
        return " ".join([*words[:i], new, *words[i + 1 :]])

    out = {
        "zero-width": with_word(w[:cut] + "\u200b" + w[cut:]),
        "soft-hyphen": with_word(w[:cut] + "\u00ad" + w[cut:]),
        "typo": with_word(w[:cut] + w[cut + 1] + w[cut] + w[cut + 2 :]),
    }
    glyphs = [j for j, ch in enumerate(w) if ch in _HOMOGLYPHS]
    if glyphs:
        j = rng.choice(glyphs)
        out["cyrillic"] = with_word(w[:j] + _HOMOGLYPHS[w[j]] + w[j + 1 :])
    leet = [j for j, ch in enumerate(w) if ch in "io" and 0 < j < len(w) - 1]
    if leet:
        j = rng.choice(leet)
        out["leet"] = with_word(w[:j] + {"i": "1", "o": "0"}[w[j]] + w[j + 1 :])
    return out
