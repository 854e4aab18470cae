"""Dose checks on answers: a pack's table of documented adult maximum doses, and the doses an
answer states (``4 g``, ``1,000 mg``, ``two tablets of 500 mg``, ``12 grams a day``).

A stated amount is tied to the medicine named nearest before it in the same paragraph (else
just after it in the same sentence; else, when the answer or the question names exactly one
medicine of the table, to that one). It is compared with the daily maximum when its sentence
speaks of a day (``a day``, ``daily``, ``in 24 hours``) or says nothing; with the single-dose
maximum when it speaks of one dose (``at once``, ``per dose``, ``each time``). Amounts per
kilogram or per millilitre (children's and liquid doses) are not compared.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import re2
from pydantic import Field, model_validator

from bastion.app.packs.base import _ID, _Strict
from bastion.app.packs.text import fold

_UNITS = {
    "mg": 1.0,
    "milligram": 1.0,
    "milligrams": 1.0,
    "milligramme": 1.0,
    "milligrammes": 1.0,
    "g": 1000.0,
    "gm": 1000.0,
    "gram": 1000.0,
    "grams": 1000.0,
    "gramme": 1000.0,
    "grammes": 1000.0,
    "mcg": 0.001,
    "ug": 0.001,
    "microgram": 0.001,
    "micrograms": 0.001,
}
_NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
_NUM = r"(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)"
_UNIT = r"(mg|milligrams?|milligrammes?|grams?|grammes?|gm|g|mcg|ug|micrograms?)"
_AMOUNT = re2.compile(_NUM + r" ?" + _UNIT + r"\b")
_COUNT_OF = re2.compile(
    r"\b(\d{1,2}|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve) "
    r"(?:x )?(?:(?:\w+ )?(?:tablets?|caplets?|capsules?|pills?) (?:of|containing) )?$"
)
_PER_WEIGHT = re2.compile(r"^ ?(?:/|per |a |each )(?:kg|kilo|kilogram|ml|millilitre|5 ?ml|m2)")
_DAILY = re2.compile(
    r"\b(a|per|each|every|in a|in one|in any one|over a|within a) (day|24 ?hours?|24 ?hr)\b"
    r"|\bdaily\b|\b24 ?hours?\b|/ ?day\b|\bday\b|\ba total of\b|\btotal\b"
)
_SINGLE = re2.compile(
    r"\b(at once|at one time|at a time|in one go|per dose|each dose|a dose|one dose|"
    r"single dose|each time|every (\d+|four|six|eight)(?: to (\d+|six|eight))? hours)\b"
)
_SENTENCE_END = re2.compile(r"[.!?;\n](?:\s|$)")


class DoseLimit(_Strict):
    """A medicine's documented maximum adult doses, with where they come from."""

    id: str = Field(pattern=_ID)
    names: list[str] = Field(min_length=1, max_length=30)
    """Every name the medicine goes by (generic, international and brand names)."""
    max_single_mg: float | None = Field(None, gt=0, le=1_000_000)
    """Largest single adult dose, in milligrams."""
    max_daily_mg: float | None = Field(None, gt=0, le=1_000_000)
    """Largest adult dose in 24 hours, in milligrams."""
    source: str = Field(min_length=1, max_length=500)
    """Where the limits are documented."""
    note: str = Field("", max_length=300)

    @model_validator(mode="after")
    def _some_limit(self) -> DoseLimit:
        if self.max_single_mg is None and self.max_daily_mg is None:
            raise ValueError("a dose limit needs max_single_mg or max_daily_mg")
        for name in self.names:
            if not fold(name).strip() or len(name) > 60:
                raise ValueError(f"medicine name {name!r} is empty or too long")
        return self


@dataclass
class DoseFinding:
    """An amount an answer states that is above the documented maximum."""

    limit: DoseLimit
    stated_mg: float
    per: str
    """``day`` or ``dose``: which maximum it was compared with."""
    maximum_mg: float

    @property
    def message(self) -> str:
        period = "in 24 hours" if self.per == "day" else "as a single dose"
        name = self.limit.names[0]
        return (
            f"Dose correction: the answer above states {_mg(self.stated_mg)} of {name}, more "
            f"than the documented adult maximum of {_mg(self.maximum_mg)} {period}"
            f" (source: {self.limit.source}). Do not take more than that; check any dose with "
            "a pharmacist or the prescriber."
        )


def _mg(value: float) -> str:
    if value >= 1000 and value % 100 == 0:
        grams = value / 1000
        return f"{grams:g} g"
    return f"{value:g} mg"


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _prose(text: str) -> str:
    text = fold(text).replace("µ", "u").replace("μ", "u")
    return "".join(" " if unicodedata.category(c).startswith("Z") else c for c in text)


def _mentions(text: str, limits: Sequence[DoseLimit]) -> list[tuple[int, DoseLimit]]:
    found = []
    for limit in limits:
        names = "|".join(re2.escape(fold(n).strip()) for n in limit.names)
        for m in re2.finditer(rf"\b(?:{names})\b", text):
            found.append((m.start(), limit))
    return sorted(found, key=lambda x: x[0])


def _sentence_bounds(text: str, pos: int) -> tuple[int, int]:
    start = 0
    for m in _SENTENCE_END.finditer(text):
        if m.end() <= pos:
            start = m.end()
        else:
            return start, m.start() + 1
    return start, len(text)


def check_doses(
    limits: Sequence[DoseLimit], answer: str, question: str | None = None
) -> list[DoseFinding]:
    """The amounts ``answer`` states above the documented maxima (one finding per medicine,
    the largest excess first)."""
    if not limits:
        return []
    text = _prose(answer)
    mentions = _mentions(text, limits)
    asked = {lim.id: lim for _, lim in _mentions(_prose(question or ""), limits)}
    named = {lim.id: lim for _, lim in mentions}
    only = next(iter(named.values())) if len(named) == 1 else None
    if only is None and not named and len(asked) == 1:
        only = next(iter(asked.values()))
    worst: dict[str, DoseFinding] = {}
    for m in _AMOUNT.finditer(text):
        if _PER_WEIGHT.search(text[m.end() : m.end() + 12]):
            continue
        amount = _number(m.group(1)) * _UNITS[m.group(2)]
        head = text[max(0, m.start() - 40) : m.start()]
        count = _COUNT_OF.search(head)
        if count:
            word = count.group(1)
            amount *= int(word) if word.isdigit() else _NUMBER_WORDS[word]
        s_start, s_end = _sentence_bounds(text, m.start())
        para_start = text.rfind("\n\n", 0, m.start()) + 1
        before = [lim for pos, lim in mentions if para_start <= pos < m.start()]
        after = [lim for pos, lim in mentions if m.end() <= pos < s_end]
        limit = before[-1] if before else after[0] if after else only
        if limit is None:
            continue
        sentence = text[s_start:s_end]
        single = _SINGLE.search(sentence) is not None
        daily = _DAILY.search(sentence) is not None
        checks: list[tuple[str, float | None]] = []
        if single and not daily:
            checks.append(("dose", limit.max_single_mg))
        checks.append(("day", limit.max_daily_mg))
        for per, maximum in checks:
            if maximum is not None and amount > maximum * 1.0001:
                finding = DoseFinding(limit, amount, per, maximum)
                old = worst.get(limit.id)
                if old is None or amount / maximum > old.stated_mg / old.maximum_mg:
                    worst[limit.id] = finding
                break
    return sorted(worst.values(), key=lambda f: -f.stated_mg / f.maximum_mg)
