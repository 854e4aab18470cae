"""Text as safety rules see it: folded, tokenised, typo-corrected and lemmatised.

The steps, each from a kept library rather than a hand-made table:

1. Unicode NFKC (fullwidth and compatibility forms), then every *format* character removed
   (category ``Cf``: zero-width spaces and joiners, soft hyphens, direction marks), case
   folded.
2. Confusable characters folded to the Latin letter they imitate (Cyrillic ``с``, Greek
   ``ο``...), from the Unicode confusables data shipped by ``confusable-homoglyphs``; inside
   a word that mixes letters and digits, digits that imitate letters too (``k1ll``). Accents
   are then removed.
3. Words: letters and digits; apostrophes dropped (``can't`` -> ``cant``); every other
   character ends a word. Sentence punctuation and a few conjunctions (``but``) end a clause,
   which bounds negation.
4. A word that is neither an English word (``simplemma``'s dictionary) nor in the pack's
   vocabulary is corrected to the nearest vocabulary word within one edit (two for words of
   seven letters or more; Damerau-style transpositions count as one), with ``rapidfuzz``.
5. Each word's lemma (``simplemma``): ``collapsed`` -> ``collapse``, ``tablets`` ->
   ``tablet``.

The result keeps two aligned forms, ``surface`` and ``lemma``, each ``" word word "`` (single
spaces, one at both ends), so a pattern ``" chest "`` matches a whole word.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

import simplemma
from rapidfuzz import process
from rapidfuzz.distance import OSA

MAX_TEXT_CHARS = 8000
"""Longer messages are checked on their first and last 4,000 characters."""

_CLAUSE_WORDS = frozenset(["but", "although", "though", "however", "except", "whereas"])
_CLAUSE_PUNCT = frozenset(".!?;:\n")


@functools.cache
def _confusables() -> dict[str, str]:
    """Each non-ASCII character that Unicode lists as confusable with one Latin letter."""
    data = resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    table: dict[str, str] = {}
    for char, entries in json.loads(data).items():
        if len(char) != 1:
            continue
        for entry in entries:
            target = entry.get("c", "")
            if len(target) == 1 and target.isascii() and target.isalpha():
                table[char] = target.lower()
                break
    return table


@functools.cache
def _digit_letters() -> dict[str, str]:
    """ASCII digits and symbols Unicode lists as confusable with a letter (``1`` -> ``l``)."""
    data = resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    out: dict[str, str] = {}
    for char, entries in json.loads(data).items():
        if len(char) == 1 and char.isascii() and not char.isalpha():
            for entry in entries:
                target = entry.get("c", "")
                if len(target) == 1 and target.isascii() and target.isalpha():
                    out[char] = target.lower()
                    break
    return out


def fold(text: str) -> str:
    """Steps 1 and 2: compatibility forms, invisible characters, case, confusables, accents."""
    if len(text) > MAX_TEXT_CHARS:
        half = MAX_TEXT_CHARS // 2
        text = text[:half] + "\n" + text[-half:]
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf").casefold()
    table = _confusables()
    text = "".join(table.get(c, c) if not c.isascii() else c for c in text)
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c))


def _words(text: str) -> list[tuple[str, bool]]:
    """Words of folded text, each with whether a clause ends before it."""
    out: list[tuple[str, bool]] = []
    word: list[str] = []
    brk = False
    for c in text:
        if c.isalnum():
            word.append(c)
            continue
        if c in "'’‘`" and word:
            continue  # apostrophes inside words are dropped: can't -> cant
        if word:
            out.append(("".join(word), brk))
            word, brk = [], False
        if c in _CLAUSE_PUNCT or c == ",":
            brk = True
    if word:
        out.append(("".join(word), brk))
    return out


def _unleet(word: str) -> str:
    if word.isalpha() or word.isdigit():
        return word
    if not (word[0].isalpha() or (word[1:].isalpha() and len(word) >= 4)):
        return word  # 40mg, 3yo: a number with a unit
    table = _digit_letters()
    return "".join(table.get(c, c) for c in word)


@functools.cache
def is_word(word: str) -> bool:
    """Whether ``word`` is an English word (or form) simplemma knows."""
    return bool(simplemma.is_known(word, lang="en"))


_NEGATIVE_STEMS = frozenset(
    [
        "do",
        "does",
        "did",
        "ca",
        "can",
        "wo",
        "is",
        "are",
        "was",
        "were",
        "have",
        "has",
        "had",
        "could",
        "would",
        "should",
        "must",
        "need",
        "ai",
        "sha",
        "might",
        "may",
    ]
)


@functools.cache
def lemma(word: str) -> str:
    """The word's lemma (a single word). Negative contractions keep their form (``dont`` is
    not ``do``)."""
    if (word.endswith("nt") and word[:-2] in _NEGATIVE_STEMS) or word == "cannot":
        return word
    out = simplemma.lemmatize(word, lang="en").casefold()
    return out if out.isalnum() else word


class Vocabulary:
    """The words a pack's concepts and patterns use: what typos are corrected to."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = sorted({w for w in words if w.isalpha() and len(w) >= 3})
        self._known = frozenset(self.words)
        self._cache: dict[str, str] = {}

    def correct(self, word: str) -> str:
        """``word``, or the vocabulary word it is a typo of (a three-letter word only when it
        lost its vowel: ``kll`` -> ``kill``)."""
        if len(word) < 3 or not word.isalpha() or word in self._known or is_word(word):
            return word
        hit = self._cache.get(word)
        if hit is None:
            limit = 1 if len(word) < 7 else 2
            found = process.extract(
                word, self.words, scorer=OSA.distance, score_cutoff=limit, limit=50
            )
            short = len(word) == 3
            if short and set(word) & set("aeiouy"):
                found = []
            # Nearest first; among equals, the same first letter (typos rarely change it).
            ranked = sorted(
                (int(d), c[0] != word[0], abs(len(c) - len(word)), c)
                for c, d, _ in found
                if abs(len(c) - len(word)) <= limit and (not short or len(c) == 4)
            )
            hit = ranked[0][3] if ranked else word
            if len(self._cache) < 10_000:
                self._cache[word] = hit
        return hit


@dataclass(frozen=True)
class Analysed:
    """A message as rules see it: two aligned forms and where each word starts."""

    surface: str
    """``" word word "``: folded, typo-corrected words."""
    lemma: str
    """The same words as lemmas."""
    surface_starts: tuple[int, ...]
    lemma_starts: tuple[int, ...]
    clause: tuple[int, ...]
    """The clause number of each word."""

    @property
    def count(self) -> int:
        return len(self.clause)

    def word_at(self, offset: int, *, lemma: bool) -> int:
        """The index of the word at or after character ``offset`` of a form."""
        starts = self.lemma_starts if lemma else self.surface_starts
        lo, hi = 0, len(starts)
        while lo < hi:
            mid = (lo + hi) // 2
            if starts[mid] < offset:
                lo = mid + 1
            else:
                hi = mid
        return lo


def _joined(words: list[str]) -> tuple[str, tuple[int, ...]]:
    starts = []
    pos = 1
    for w in words:
        starts.append(pos)
        pos += len(w) + 1
    return " " + " ".join(words) + " ", tuple(starts)


def analyse(text: str, vocabulary: Vocabulary | None = None) -> Analysed:
    """``text`` folded, split into words, typo-corrected against ``vocabulary`` and
    lemmatised."""
    words: list[str] = []
    clauses: list[int] = []
    clause = 0
    for raw, brk in _words(fold(text)):
        word = _unleet(raw)
        if word in _CLAUSE_WORDS or brk:
            clause += 1
        if vocabulary is not None:
            word = vocabulary.correct(word)
        words.append(word)
        clauses.append(clause)
    lemmas = [lemma(w) if w.isalpha() else w for w in words]
    surface, s_starts = _joined(words)
    lem, l_starts = _joined(lemmas)
    return Analysed(surface, lem, s_starts, l_starts, tuple(clauses))


def normalise(text: str) -> str:
    """Text as a plain pattern sees it: folded, lower case, words separated by one space and
    a space at both ends (no typo correction, no lemmas)."""
    return analyse(text).surface
