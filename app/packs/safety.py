"""Safety rules: checks on the user's message (before the model) and on the answer.

A rule's patterns are regular expressions run with RE2 (linear time: no pattern can stall a
check, whatever the input) against the message as :mod:`bastion.app.packs.text` analyses it,
in two aligned forms: the folded, typo-corrected words (``surface``) and their lemmas
(``lemma``). A pattern matches when it matches either form. ``{name}`` in a pattern stands for
the pack's concept ``name``: any of its terms, in both forms.

A match does not count when its first word is in the scope of a negation (``no chest pain``,
``not suicidal``: the pack's ``negation`` concept, up to three words before, in the same
clause) or of a hypothetical or informational framing (``the warning signs of a stroke``,
``a history of``: the pack's ``hypothetical`` concept, up to four words before).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import re2
from pydantic import Field, field_validator, model_validator

from bastion.app.packs.base import _ID, MAX_PATTERN_CHARS, _Strict
from bastion.app.packs.text import Analysed, Vocabulary, analyse, normalise

__all__ = [
    "Hit",
    "RuleEngine",
    "SafetyRule",
    "compile_re2",
    "concept_names",
    "normalise",
]

NEGATION_WINDOW = 3
HYPOTHETICAL_WINDOW = 4
MAX_CONCEPT_DEPTH = 3
_RE2_MAX_MEM = 8 << 20
_CONCEPT_REF = re2.compile(r"\{([a-z_][a-z0-9_]{0,39})\}")


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = _RE2_MAX_MEM
    return options


def compile_re2(pattern: str) -> re2._Regexp:
    """``pattern`` compiled by RE2.

    Raises:
        ValueError: RE2 cannot run it (look-arounds, back-references...) or it is malformed.
    """
    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(f"RE2 cannot run it: {detail}") from None


def concept_names(pattern: str) -> list[str]:
    """The ``{name}`` concept references of a pattern or term."""
    return [m.group(1) for m in _CONCEPT_REF.finditer(pattern)]


class SafetyRule(_Strict):
    """A check on the user's message (before the model) or the answer (after it).

    ``respond`` rules replace the model's answer with ``message`` (the model is not called);
    ``caution`` rules show ``message`` above the answer. Patterns are RE2 regular expressions
    matched against the analysed text (lower case, no punctuation, single spaces, a space at
    both ends, so ``" word "`` matches whole words); ``{name}`` stands for a concept of the
    pack.
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
    partial: list[str] = Field(default_factory=list, max_length=50)
    """The uncertain tier: when the rule does not fire but one of these matches, show
    ``partial_message`` as a caution above the answer (e.g. chest pain without the rest of a
    heart attack's signs)."""
    partial_message: str | None = Field(None, min_length=1, max_length=2000)
    message: str = Field(min_length=1, max_length=2000)
    """The fixed, reviewed text shown when the rule fires."""
    positive: list[str] = Field(min_length=1, max_length=50)
    """Messages the rule must fire on (checked when the pack is loaded)."""
    negative: list[str] = Field(min_length=1, max_length=50)
    """Messages the rule must not fire on (checked when the pack is loaded)."""
    hypothetical: bool = False
    """When true, a match framed as information or the past (the pack's ``hypothetical``
    concept just before it: ``the signs of``, ``a history of``) does not count: for rules
    about something happening now."""
    uncertain: list[str] = Field(default_factory=list, max_length=50)
    """Messages that must reach the uncertain tier only (checked when the pack is loaded)."""

    @field_validator("any", "all", "none", "partial")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for i, pattern in enumerate(patterns):
            if len(pattern) > MAX_PATTERN_CHARS:
                raise ValueError(f"pattern {i + 1} is longer than {MAX_PATTERN_CHARS} characters")
            try:
                compile_re2(_CONCEPT_REF.sub("(?:x)", pattern))
            except ValueError as exc:
                raise ValueError(f"pattern {i + 1} {pattern!r}: {exc}") from None
        return patterns

    @model_validator(mode="after")
    def _shape(self) -> SafetyRule:
        if not self.any and not self.all:
            raise ValueError("a rule needs patterns in `any` or `all`")
        if self.stage == "output" and self.action == "respond":
            raise ValueError("an output rule can only caution (the answer is already shown)")
        if bool(self.partial) != (self.partial_message is not None):
            raise ValueError("`partial` and `partial_message` go together")
        if self.uncertain and not self.partial:
            raise ValueError("`uncertain` examples need `partial` patterns")
        return self

    def matches(self, text: str) -> bool:
        """Whether the rule fires on ``text`` on its own (a rule that uses concepts needs its
        pack: use :meth:`bastion.app.packs.Pack.check`)."""
        engine = RuleEngine([self], {})
        return any(h.tier == "full" for h in engine.evaluate(text, self.stage))


@dataclass
class Hit:
    """A rule that fired: fully, or only its uncertain tier."""

    rule: SafetyRule
    tier: Literal["full", "partial"]
    concepts: list[str] = field(default_factory=list)
    """The concepts of the rule that matched the text."""

    @property
    def action(self) -> str:
        return self.rule.action if self.tier == "full" else "caution"

    @property
    def message(self) -> str:
        if self.tier == "full":
            return self.rule.message
        assert self.rule.partial_message is not None
        return self.rule.partial_message


class _Pattern:
    """A compiled pattern and its index in the engine's RE2 set."""

    def __init__(self, regex: re2._Regexp, index: int) -> None:
        self.regex = regex
        self.index = index


class _Compiled:
    def __init__(self, rule: SafetyRule, add: Callable[[str], _Pattern]) -> None:
        self.rule = rule
        self.any = [add(p) for p in rule.any]
        self.all = [add(p) for p in rule.all]
        self.none = [add(p) for p in rule.none]
        self.partial = [add(p) for p in rule.partial]
        self.concepts = sorted(
            {n for p in (*rule.any, *rule.all, *rule.partial) for n in concept_names(p)}
        )


def _expanded(pattern: str, expand: Mapping[str, str]) -> str:
    return _CONCEPT_REF.sub(lambda m: expand.get(m.group(1), m.group(0)), pattern)


def _term_regex(term: str, concepts: Mapping[str, Sequence[str]], depth: int) -> set[str]:
    """The alternatives a concept term stands for, in surface and lemma form."""
    cache = _TERM_CACHE.get(id(concepts))
    if cache is None or cache[0] is not concepts:
        cache = (concepts, {})
        _TERM_CACHE.clear()
        _TERM_CACHE[id(concepts)] = cache
    key = (term, depth)
    if key not in cache[1]:
        cache[1][key] = _term_regex_uncached(term, concepts, depth)
    return cache[1][key]


_TERM_CACHE: dict[int, tuple[Mapping[str, Sequence[str]], dict[tuple[str, int], set[str]]]] = {}


def _term_regex_uncached(term: str, concepts: Mapping[str, Sequence[str]], depth: int) -> set[str]:
    if term.startswith("re:"):
        return {f"(?:{term[3:]})"}
    out: set[str] = set()
    exact = term.startswith("=")
    words = _term_words(term.removeprefix("="), concepts, depth)
    if words and exact:
        out.add(" ".join(words))
    elif words:
        forms = [" ".join(words)]
        lemmas = []
        for w in words:
            if w.startswith("(?:") or w.endswith("\\w*") or not w.isalpha():
                lemmas.append(w)
            else:
                lemmas.append(analyse(w).lemma.strip() or w)
        forms.append(" ".join(lemmas))
        out.update(forms)
    return out


def _term_words(term: str, concepts: Mapping[str, Sequence[str]], depth: int) -> list[str]:
    """A term as regex words: plain words, ``word*`` prefixes, ``{concept}`` groups."""
    words = []
    for raw in term.split():
        ref = _CONCEPT_REF.fullmatch(raw)
        if ref:
            name = ref.group(1)
            if depth >= MAX_CONCEPT_DEPTH or name not in concepts:
                raise ValueError(f"concept {{{name}}} is unknown or nested too deeply")
            inner = sorted(
                {alt for t in concepts[name] for alt in _term_regex(t, concepts, depth + 1)}
            )
            words.append("(?:" + "|".join(inner) + ")\\b")
            continue
        star = raw.endswith("*")
        folded = analyse(raw.rstrip("*")).surface.split()
        if not folded:
            continue
        for i, w in enumerate(folded):
            last = i == len(folded) - 1
            words.append(re2.escape(w) + ("\\w*" if star and last else ""))
    return words


def expand_concepts(concepts: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Each concept as an RE2 group: ``(?:alt|alt)\\b`` of its terms in both forms (a whole
    word or phrase: it ends at a word boundary).

    Raises:
        ValueError: a term refers to an unknown concept, or concepts nest too deeply.
    """
    out = {}
    for name, terms in concepts.items():
        alts: set[str] = set()
        for term in terms:
            alts.update(_term_regex(term, concepts, 1))
        # Longest first, so that a phrase wins over its first word.
        ordered = sorted(alts, key=lambda a: (-len(a), a))
        out[name] = "(?:" + "|".join(ordered) + ")\\b"
    return out


def vocabulary_of(concepts: Mapping[str, Sequence[str]], rules: Sequence[SafetyRule]) -> Vocabulary:
    """The words typos are corrected to: the concepts' words and the rules' literal words."""
    words: set[str] = set()
    for terms in concepts.values():
        for term in terms:
            if not term.startswith("re:"):
                words.update(
                    w.rstrip("*") for w in term.removeprefix("=").split() if not w.startswith("{")
                )
    word = re2.compile(r"[a-z]{4,}")
    for rule in rules:
        for p in (*rule.any, *rule.all, *rule.partial):
            for m in word.finditer(_CONCEPT_REF.sub(" ", p)):
                words.add(m.group(0))
    return Vocabulary(w.casefold() for w in words)


@dataclass(frozen=True)
class _Scan:
    analysed: Analysed
    surface_hits: frozenset[int]
    lemma_hits: frozenset[int]


class RuleEngine:
    """A pack's rules compiled once: evaluate a text in one pass of analysis."""

    def __init__(self, rules: Sequence[SafetyRule], concepts: Mapping[str, Sequence[str]]) -> None:
        self.expand = expand_concepts(concepts)
        self.vocabulary = vocabulary_of(concepts, rules)
        # Every pattern goes into one RE2 set: one pass per form says which ones match
        # anywhere; only those are then located (for negation and framing).
        self._set = re2.Set.SearchSet(_options())
        self._patterns: dict[str, _Pattern] = {}
        self.rules = [_Compiled(r, self._add) for r in rules]
        self.negation = (
            compile_re2(f" {self.expand['negation']} ") if "negation" in self.expand else None
        )
        self.hypothetical = (
            compile_re2(f" {self.expand['hypothetical']} ")
            if "hypothetical" in self.expand
            else None
        )
        self._concept_res = {n: self._add(f" {{{n}}}") for n in self.expand}
        if self._set.Compile() is False:
            raise ValueError("RE2 cannot compile the rules together")

    def _add(self, pattern: str) -> _Pattern:
        text = _expanded(pattern, self.expand)
        found = self._patterns.get(text)
        if found is None:
            regex = compile_re2(text)
            index = self._set.Add(text)
            if index < 0:
                raise ValueError(f"RE2 cannot run {pattern!r}")
            found = self._patterns[text] = _Pattern(regex, index)
        return found

    def analyse(self, text: str) -> Analysed:
        return analyse(text, self.vocabulary)

    def _blocked(self, a: Analysed, cue: re2._Regexp | None, window: int) -> frozenset[int]:
        """The words in the scope of ``cue``: the next ``window`` words of its clause."""
        blocked: set[int] = set()
        if cue is not None:
            for form, starts in ((a.surface, a.surface_starts), (a.lemma, a.lemma_starts)):
                for m in cue.finditer(form):
                    # The cue ends with a space: the next word starts right after it.
                    end = bisect.bisect_left(starts, m.end())
                    if end >= a.count:
                        continue
                    clause = a.clause[end - 1] if end > 0 else a.clause[end]
                    for i in range(end, min(end + window, a.count)):
                        if a.clause[i] != clause:
                            break
                        blocked.add(i)
        return frozenset(blocked)

    @staticmethod
    def _word(starts: Sequence[int], form: str, offset: int) -> int:
        if offset < len(form) and form[offset] == " ":
            offset += 1
        return max(bisect.bisect_right(starts, offset) - 1, 0)

    def _found(self, p: _Pattern, scan: _Scan, blocked: frozenset[int]) -> bool:
        a = scan.analysed
        for form, starts, hits in (
            (a.surface, a.surface_starts, scan.surface_hits),
            (a.lemma, a.lemma_starts, scan.lemma_hits),
        ):
            if p.index not in hits:
                continue
            for m in p.regex.finditer(form):
                if self._word(starts, form, m.start()) not in blocked:
                    return True
        return False

    @staticmethod
    def _plain(p: _Pattern, scan: _Scan) -> bool:
        return p.index in scan.surface_hits or p.index in scan.lemma_hits

    def evaluate(self, text: str, stage: str = "input") -> list[Hit]:
        """The rules of ``stage`` that fire on ``text``: full hits (``respond`` first), then
        uncertain-tier hits."""
        return self._evaluate(text, [c for c in self.rules if c.rule.stage == stage])

    def _evaluate(self, text: str, rules: Sequence[_Compiled]) -> list[Hit]:
        a = self.analyse(text)
        scan = _Scan(
            a,
            frozenset(self._set.Match(a.surface) or ()),
            frozenset(self._set.Match(a.lemma) or ()),
        )
        negated = self._blocked(a, self.negation, NEGATION_WINDOW)
        framed = negated | self._blocked(a, self.hypothetical, HYPOTHETICAL_WINDOW)
        full: list[Hit] = []
        partial: list[Hit] = []
        for c in rules:
            blocked = framed if c.rule.hypothetical else negated
            if any(self._plain(r, scan) for r in c.none):
                continue
            fired = (not c.any or any(self._found(r, scan, blocked) for r in c.any)) and all(
                self._found(r, scan, blocked) for r in c.all
            )
            if fired:
                full.append(Hit(c.rule, "full", self._concepts(c, scan, blocked)))
            elif c.partial and any(self._found(r, scan, blocked) for r in c.partial):
                partial.append(Hit(c.rule, "partial", self._concepts(c, scan, blocked)))
        full.sort(key=lambda h: h.rule.action != "respond")
        return full + partial

    def _concepts(self, c: _Compiled, scan: _Scan, blocked: frozenset[int]) -> list[str]:
        return [n for n in c.concepts if self._found(self._concept_res[n], scan, blocked)]

    def check_examples(self) -> list[tuple[int, str, str]]:
        """Every rule's own examples that do not hold: ``(rule index, field, message)``."""
        problems = []
        for i, c in enumerate(self.rules):
            rule = c.rule
            for field_name, texts, want in (
                ("positive", rule.positive, "full"),
                ("negative", rule.negative, None),
                ("uncertain", rule.uncertain, "partial"),
            ):
                for text in texts:
                    got = next((h.tier for h in self._evaluate(text, [c])), None)
                    if field_name == "negative" and got == "full":
                        problems.append((i, field_name, f"negative example fires: {text!r}"))
                    elif field_name != "negative" and got != want:
                        what = "does not fire" if want == "full" else "is not uncertain-tier"
                        problems.append((i, field_name, f"{field_name} example {what}: {text!r}"))
        return problems
