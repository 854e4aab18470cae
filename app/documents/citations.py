"""The check of an answer's citations (turn stage 5), after the answer is complete.

Each sentence that cites ``[n]`` is checked against passage ``n``:

- ``[n]`` must be a passage the model was given (else: an invented citation);
- most of the sentence's content words must be in the passage (``MIN_OVERLAP``; words are
  compared case- and accent-folded, by a light stem, so "prescribed" meets "prescribes");
- every number in the sentence, with its unit when it has one ("5 mg", "12 %", "30 days"),
  must be in the passage.

Separately, every number of the answer must appear in some passage (or the question): a
number found in no source is flagged even when the sentence cites nothing. The flags are
:class:`~bastion.storage.schema.SafetyNotice` with stage ``citations`` and action ``flag``,
shown under the answer and stored with it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from bastion.storage.schema import SafetyNotice, SourceRef

MIN_OVERLAP = 0.5
"""Share of a citing sentence's content words that must be in the cited passage."""

_CITE = re.compile(r"\[(\d{1,4}(?:\s*[,;–-]\s*\d{1,4})*)\]")
_NUMBER = re.compile(
    r"(?<![\w.,])(\d{1,3}(?:[,\u202f\u00a0 ]\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?)"
    r"(?:\s?(%|‰|[a-zA-Zµμ°]{1,6}(?:/[a-zA-Z]{1,5})?))?"
)
_UNITS = frozenset(
    [
        "%",
        "‰",
        "mg",
        "g",
        "kg",
        "µg",
        "μg",
        "mcg",
        "ug",
        "ng",
        "ml",
        "l",
        "dl",
        "cl",
        "mmol",
        "mol",
        "µmol",
        "iu",
        "ui",
        "mm",
        "cm",
        "m",
        "km",
        "in",
        "ft",
        "mi",
        "lb",
        "lbs",
        "oz",
        "s",
        "sec",
        "min",
        "mins",
        "h",
        "hr",
        "hrs",
        "hour",
        "hours",
        "day",
        "days",
        "week",
        "weeks",
        "wk",
        "month",
        "months",
        "year",
        "years",
        "yr",
        "yrs",
        "kb",
        "mb",
        "gb",
        "tb",
        "kib",
        "mib",
        "gib",
        "kbit",
        "mbit",
        "ms",
        "us",
        "ns",
        "hz",
        "khz",
        "mhz",
        "ghz",
        "w",
        "kw",
        "mw",
        "kwh",
        "v",
        "mv",
        "a",
        "ma",
        "°c",
        "°f",
        "c",
        "f",
        "eur",
        "usd",
        "gbp",
        "chf",
        "jpy",
        "bpm",
        "mmhg",
        "kcal",
        "cal",
        "times",
        "x",
    ]
)
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "nor",
        "so",
        "yet",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "into",
        "onto",
        "about",
        "above",
        "below",
        "over",
        "under",
        "after",
        "before",
        "between",
        "during",
        "through",
        "without",
        "within",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "doing",
        "have",
        "has",
        "had",
        "having",
        "can",
        "could",
        "shall",
        "should",
        "will",
        "would",
        "may",
        "might",
        "must",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "they",
        "them",
        "their",
        "there",
        "here",
        "he",
        "she",
        "his",
        "her",
        "we",
        "our",
        "you",
        "your",
        "i",
        "me",
        "my",
        "not",
        "no",
        "yes",
        "also",
        "such",
        "than",
        "then",
        "which",
        "who",
        "whom",
        "whose",
        "what",
        "when",
        "where",
        "why",
        "how",
        "all",
        "any",
        "each",
        "every",
        "both",
        "either",
        "neither",
        "some",
        "more",
        "most",
        "other",
        "same",
        "only",
        "own",
        "very",
        "just",
        "too",
        "much",
        "many",
        "one",
        "per",
        "via",
        "if",
        "because",
        "while",
        "until",
        "up",
        "out",
        "off",
        "again",
        "further",
        "once",
        "says",
        "said",
        "according",
        "states",
        "stated",
        "document",
        "passage",
        "source",
        "sources",
        "page",
    ]
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[^\s\[])|\n+")
_LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d{1,3}[.)])\s+")


def _fold(word: str) -> str:
    word = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in word if not unicodedata.combining(c))


def _stem(word: str) -> str:
    w = _fold(word)
    for suffix in (
        "ations",
        "ation",
        "ments",
        "ment",
        "ings",
        "ing",
        "ies",
        "ied",
        "es",
        "ed",
        "ly",
        "s",
    ):
        if w.endswith(suffix) and len(w) - len(suffix) >= 4:
            return w[: -len(suffix)]
    return w


def content_words(text: str) -> set[str]:
    """The stems of ``text``'s content words (no stop words, numbers or one-letter words)."""
    return {_stem(w) for w in re.findall(r"[^\W\d_]{2,}", text) if _fold(w) not in _STOP}


def _norm_number(raw: str) -> str:
    raw = raw.replace("\u202f", "").replace("\u00a0", "").replace(" ", "")
    if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", raw):
        raw = raw.replace(",", "")
    raw = raw.replace(",", ".")
    if "." in raw:
        raw = raw.rstrip("0").rstrip(".")
    return raw.lstrip("0") or "0"


def numbers(text: str) -> list[tuple[str, str, str]]:
    """``(as written, normalised number, unit or "")`` for each number in ``text`` (citation
    markers, list numbering and ordinal-less years included as plain numbers)."""
    text = _CITE.sub(" ", text)
    out: list[tuple[str, str, str]] = []
    for m in _NUMBER.finditer(text):
        unit = (m.group(2) or "").casefold()
        if unit not in _UNITS:
            unit = ""
        written = m.group(0) if unit else m.group(1)
        out.append((written.strip(), _norm_number(m.group(1)), unit))
    return out


def _number_set(text: str) -> set[tuple[str, str]]:
    found = set()
    for _, value, unit in numbers(text):
        found.add((value, unit))
        found.add((value, ""))
    return found


def _has(found: set[tuple[str, str]], value: str, unit: str) -> bool:
    return (value, unit) in found


def sentences(answer: str) -> list[str]:
    """The answer's sentences (a citation after the full stop stays with its sentence)."""
    out: list[str] = []
    for part in _SENTENCE.split(answer):
        part = _LIST_MARK.sub("", part).strip()
        if not part:
            continue
        if out and _CITE.fullmatch(part.rstrip(".")):
            out[-1] += " " + part
        else:
            out.append(part)
    return out


def cited(sentence: str) -> list[int]:
    """The passage numbers a sentence cites (``[1]``, ``[1, 3]``, ``[2-4]``)."""
    ns: list[int] = []
    for m in _CITE.finditer(sentence):
        for part in re.split(r"\s*[,;]\s*", m.group(1)):
            bounds = re.split(r"\s*[–-]\s*", part)
            if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
                lo, hi = int(bounds[0]), int(bounds[1])
                ns.extend(range(lo, min(hi, lo + 20) + 1))
            elif part.isdigit():
                ns.append(int(part))
    return ns


def _short(sentence: str, limit: int = 80) -> str:
    text = re.sub(r"\s+([.,;:!?])", r"\1", _CITE.sub("", sentence)).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _notice(rule: str, message: str) -> SafetyNotice:
    return SafetyNotice(rule=rule, stage="citations", action="flag", message=message[:4000])


def check(answer: str, sources: Sequence[SourceRef], question: str = "") -> list[SafetyNotice]:
    """The flags for ``answer`` given the numbered ``sources`` it was written from."""
    by_n = {s.n: s for s in sources}
    passages = {s.n: (s.text or "") for s in sources}
    label = {s.n: s.label for s in sources}
    every_source = " ".join(passages.values()) + " " + " ".join(label.values())
    known_numbers = _number_set(every_source) | _number_set(question)
    flags: list[SafetyNotice] = []
    flagged_numbers: set[tuple[str, str]] = set()
    for i, sentence in enumerate(sentences(answer), start=1):
        ns = cited(sentence)
        if not ns:
            continue
        missing = [n for n in ns if n not in by_n]
        for n in _unique(missing):
            flags.append(
                _notice(
                    "citation",
                    f"sentence {i} cites [{n}], but no passage [{n}] was given: "
                    f"“{_short(sentence)}”",
                )
            )
        real = [n for n in _unique(ns) if n in by_n]
        if not real:
            continue
        text = " ".join(passages[n] for n in real)
        marks = ", ".join(f"[{n}]" for n in real)
        words = content_words(_CITE.sub(" ", sentence))
        have = content_words(text)
        prefixes = {w[:5] for w in have if len(w) >= 6}
        if words:
            hits = sum(1 for w in words if w in have or (len(w) >= 6 and w[:5] in prefixes))
            if hits / len(words) < MIN_OVERLAP:
                flags.append(
                    _notice(
                        "citation",
                        f"sentence {i} cites {marks}, but the passage does not say that: "
                        f"“{_short(sentence)}”",
                    )
                )
                continue
        in_passage = _number_set(text)
        for written, value, unit in numbers(sentence):
            if not _has(in_passage, value, unit):
                flagged_numbers.add((value, unit))
                flags.append(
                    _notice(
                        "citation",
                        f"sentence {i} cites {marks}, but {written} is not in "
                        f"{'that passage' if len(real) == 1 else 'those passages'}: "
                        f"“{_short(sentence)}”",
                    )
                )
    for written, value, unit in numbers(answer):
        if (value, unit) in flagged_numbers or _has(known_numbers, value, unit):
            continue
        if unit == "" and (value, "") in {(v, "") for v, _ in known_numbers}:
            continue
        flagged_numbers.add((value, unit))
        flags.append(_notice("number", f"{written} is not in any source"))
    return flags


def _unique(items: Iterable[int]) -> list[int]:
    seen: list[int] = []
    for x in items:
        if x not in seen:
            seen.append(x)
    return seen
