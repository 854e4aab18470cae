"""Safety rules: checks on the user's message (before the model) and on the answer."""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from pydantic import Field, field_validator, model_validator

from bastion.app.packs.base import _ID, MAX_PATTERN_CHARS, _Strict


def normalise(text: str) -> str:
    """Text as safety patterns see it: NFKC, case-folded, accents removed, apostrophes
    dropped, every other non-alphanumeric run turned into one space."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"['’‘`]", "", text)
    text = re.sub(r"[^\w]+|_", " ", text)
    return f" {' '.join(text.split())} "


class SafetyRule(_Strict):
    """A check on the user's message (before the model) or the answer (after it).

    ``respond`` rules replace the model's answer with ``message`` (the model is not called);
    ``caution`` rules show ``message`` beside the answer. Patterns are Python regular
    expressions matched against :func:`normalise`-d text (lower case, no punctuation, single
    spaces, a space at both ends, so ``" word "`` matches whole words).
    """

    id: str = Field(pattern=_ID)
    description: str = Field(min_length=1, max_length=300)
    stage: Literal["input", "output"] = "input"
    """``input``: the user's message; ``output``: the model's answer."""
    action: Literal["respond", "caution"] = "caution"
    any: list[str] = Field(default_factory=list, max_length=100)
    """At least one of these must match (when given)."""
    all: list[str] = Field(default_factory=list, max_length=20)
    """Every one of these must match."""
    none: list[str] = Field(default_factory=list, max_length=50)
    """The rule does not fire when one of these matches."""
    message: str = Field(min_length=1, max_length=2000)
    """The fixed, reviewed text shown when the rule fires."""
    positive: list[str] = Field(min_length=1, max_length=50)
    """Messages the rule must fire on (checked when the pack is loaded)."""
    negative: list[str] = Field(min_length=1, max_length=50)
    """Messages the rule must not fire on (checked when the pack is loaded)."""

    @field_validator("any", "all", "none")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for i, pattern in enumerate(patterns):
            if len(pattern) > MAX_PATTERN_CHARS:
                raise ValueError(f"pattern {i + 1} is longer than {MAX_PATTERN_CHARS} characters")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"pattern {i + 1} {pattern!r} is not a valid regex: {exc}"
                ) from None
        return patterns

    @model_validator(mode="after")
    def _examples_hold(self) -> SafetyRule:
        if not self.any and not self.all:
            raise ValueError("a rule needs patterns in `any` or `all`")
        if self.stage == "output" and self.action == "respond":
            raise ValueError("an output rule can only caution (the answer is already shown)")
        for text in self.positive:
            if not self.matches(text):
                raise ValueError(f"positive example does not fire: {text!r}")
        for text in self.negative:
            if self.matches(text):
                raise ValueError(f"negative example fires: {text!r}")
        return self

    def matches(self, text: str) -> bool:
        norm = normalise(text)
        if self.any and not any(re.search(p, norm) for p in self.any):
            return False
        if not all(re.search(p, norm) for p in self.all):
            return False
        return not any(re.search(p, norm) for p in self.none)
