"""The pack format: pydantic models with ``extra="forbid"`` (its JSON Schema is committed as
``schemas/pack.schema.json``)."""

from __future__ import annotations

import functools
import json
import re
import string
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import tomli_w
from pydantic import Field, model_validator

from bastion.app.packs.base import (
    _ID,
    _SEMVER,
    MAX_REFERENCE_BYTES,
    SIGNATURE_CONTEXT,
    TemplateError,
    _Strict,
)
from bastion.app.packs.doses import DoseFinding, DoseLimit, check_doses
from bastion.app.packs.safety import Hit, RuleEngine, SafetyRule
from bastion.models.settings import SamplingSettings


class Example(_Strict):
    """A worked example: a user message and the answer the pack wants, shown to the model."""

    user: str = Field(min_length=1, max_length=4000)
    """What the user asks."""
    assistant: str = Field(min_length=1, max_length=8000)
    """The model answer the pack considers a good one."""


class Variable(_Strict):
    """A value the user fills in when using a template."""

    name: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,31}$")
    """Placeholder name, used as ``{name}`` in the template's prompt."""
    label: str = Field(min_length=1, max_length=80)
    """What the form shows next to the field."""
    type: Literal["text", "number", "choice"] = "text"
    """``number`` accepts decimal numbers only; ``choice`` one of ``choices``."""
    required: bool = True
    """A required variable must be given; an optional one renders as empty text."""
    choices: list[str] = Field(default_factory=list, max_length=50)
    """The allowed values of a ``choice`` variable."""
    help: str = Field("", max_length=300)
    """A hint shown under the field."""

    @model_validator(mode="after")
    def _choices_match_type(self) -> Variable:
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice variable needs choices")
        if self.type != "choice" and self.choices:
            raise ValueError("choices are only for variables of type choice")
        return self


def placeholders(text: str) -> list[str]:
    """The ``{name}`` fields of a template prompt (``{{`` and ``}}`` are literal braces).

    Raises:
        ValueError: unbalanced braces, or a field that is not a plain name.
    """
    names = []
    for _, field_name, spec, conversion in string.Formatter().parse(text):
        if field_name is None:
            continue
        if spec or conversion or not re.fullmatch(r"[a-z_][a-z0-9_]{0,31}", field_name):
            raise ValueError(f"placeholder {{{field_name}}} must be a plain variable name")
        names.append(field_name)
    return names


class Template(_Strict):
    """A reusable prompt, offered as the slash command ``/id`` with a small form."""

    id: str = Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")
    """Slash-command name."""
    title: str = Field(min_length=1, max_length=80)
    description: str = Field("", max_length=500)
    prompt: str = Field(min_length=1, max_length=4000)
    """The message sent, with ``{name}`` placeholders for the variables."""
    variables: list[Variable] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _placeholders_defined(self) -> Template:
        try:
            used = placeholders(self.prompt)
        except ValueError as exc:
            raise ValueError(f"prompt: {exc}") from None
        declared = [v.name for v in self.variables]
        if len(set(declared)) != len(declared):
            raise ValueError("two variables have the same name")
        undefined = [n for n in used if n not in declared]
        if undefined:
            raise ValueError(f"prompt uses undefined variable {{{undefined[0]}}}")
        unused = [n for n in declared if n not in used]
        if unused:
            raise ValueError(f"variable {unused[0]!r} is not used in the prompt")
        return self

    def render(self, values: Mapping[str, str]) -> str:
        """The prompt with ``values`` filled in.

        Raises:
            TemplateError: a required value is missing, a number is not a number, a choice
                is not one of the choices, or a value names no variable.
        """
        known = {v.name: v for v in self.variables}
        for name in values:
            if name not in known:
                raise TemplateError(f"/{self.id} has no variable {name!r}")
        filled: dict[str, str] = {}
        for var in self.variables:
            value = str(values.get(var.name, "")).strip()
            if not value:
                if var.required:
                    raise TemplateError(f"/{self.id}: {var.label} ({var.name}) is required")
            elif var.type == "number" and not re.fullmatch(r"[-+]?\d+([.,]\d+)?", value):
                raise TemplateError(f"/{self.id}: {var.label} must be a number")
            elif var.type == "choice" and value not in var.choices:
                raise TemplateError(
                    f"/{self.id}: {var.label} must be one of: {', '.join(var.choices)}"
                )
            filled[var.name] = value
        out = []
        for literal, field_name, _, _ in string.Formatter().parse(self.prompt):
            out.append(literal)
            if field_name is not None:
                out.append(filled[field_name])
        return "".join(out)


class Reference(_Strict):
    """A short reference document that grounds answers (Markdown)."""

    id: str = Field(pattern=_ID)
    title: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500)
    """Attribution: the public source the text summarises."""
    text: str | None = Field(None, max_length=MAX_REFERENCE_BYTES)
    """The document itself (single-file packs)."""
    file: str | None = Field(None, max_length=300)
    """A Markdown file relative to the pack folder (folder packs)."""

    @model_validator(mode="after")
    def _text_or_file(self) -> Reference:
        if (self.text is None) == (self.file is None):
            raise ValueError("a reference needs exactly one of `text` or `file`")
        return self


class EvalQuestion(_Strict):
    """A multiple-choice question the pack should help answer (for ``bench/packs.py``)."""

    question: str = Field(min_length=1, max_length=1000)
    options: list[str] = Field(min_length=2, max_length=6)
    answer: int = Field(ge=0)
    """Index (from 0) of the correct option."""

    @model_validator(mode="after")
    def _answer_in_range(self) -> EvalQuestion:
        if self.answer >= len(self.options):
            raise ValueError(f"answer {self.answer} is not an option index")
        return self


class Signature(_Strict):
    """An Ed25519 signature over the pack's canonical content (``bastion packs sign``)."""

    algorithm: Literal["ed25519"] = "ed25519"
    public_key: str = Field(pattern=r"^ed25519:[A-Za-z0-9+/]{43}=$")
    signer: str = Field(min_length=1, max_length=100)
    """The name the signer gave; trust comes from the key, not from this name."""
    value: str = Field(pattern=r"^[A-Za-z0-9+/]{86}==$")


def _unique(items: Iterable[Any], what: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"two {what} have the id {item.id!r}")
        seen.add(item.id)


class Pack(_Strict):
    """A domain pack: prompt, examples, templates, safety rules and references."""

    format: Literal[1] = 1
    """Pack format version."""
    id: str = Field(pattern=_ID)
    """Short name, e.g. ``medical``; an import with the same id upgrades the pack."""
    name: str = Field(min_length=1, max_length=80)
    version: str = Field(pattern=_SEMVER)
    """Semantic version; only a newer version replaces an installed pack silently."""
    description: str = Field(min_length=1, max_length=1000)
    author: str = Field(min_length=1, max_length=200)
    license: str = Field(min_length=1, max_length=100)
    language: str = Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    """BCP 47 language tag of the prompts, e.g. ``en`` or ``en-GB``."""
    min_context: int = Field(2048, ge=512, le=131072)
    """Smallest model context (tokens) the pack works with."""
    system_prompt: str = Field(min_length=1, max_length=20000)
    disclaimer: str = Field(min_length=1, max_length=2000)
    """Shown while the pack is active and included in every export that used it."""
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    """Sampling defaults for conversations with this pack."""
    examples: list[Example] = Field(default_factory=list, max_length=20)
    templates: list[Template] = Field(default_factory=list, max_length=100)
    concepts: dict[str, list[str]] = Field(default_factory=dict, max_length=300)
    """Concept sets for safety patterns: ``{name}`` in a pattern matches any of the terms
    (words or phrases; ``word*`` matches words starting with ``word``; ``{other}`` nests
    another concept; ``re:...`` is an RE2 fragment; a term starting with ``=`` matches only
    as written, not its lemmas). Two names have a meaning of their own: ``negation`` (cues such as
    ``no``, ``not``, ``never`` that cancel a match in the next three words of the same
    clause) and ``hypothetical`` (``signs of``, ``history of``... in the four words before)."""
    safety: list[SafetyRule] = Field(default_factory=list, max_length=200)
    doses: list[DoseLimit] = Field(default_factory=list, max_length=300)
    """Documented maximum adult doses: an answer stating more gets a correction notice."""
    references: list[Reference] = Field(default_factory=list, max_length=500)
    eval: list[EvalQuestion] = Field(default_factory=list, max_length=1000)
    signature: Signature | None = None

    @model_validator(mode="after")
    def _ids_unique(self) -> Pack:
        _unique(self.templates, "templates")
        _unique(self.safety, "safety rules")
        _unique(self.references, "references")
        _unique(self.doses, "dose limits")
        for name, terms in self.concepts.items():
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,39}", name):
                raise ValueError(
                    f"concepts.{name}: a concept name is lower case letters, digits, _"
                )
            if not terms or len(terms) > 300 or any(not t.strip() or len(t) > 200 for t in terms):
                raise ValueError(f"concepts.{name}: 1 to 300 terms of 1 to 200 characters")
        for i, rule in enumerate(self.safety):
            for fname in ("any", "all", "none", "partial"):
                for pattern in getattr(rule, fname):
                    for ref in re.findall(r"\{([a-z_][a-z0-9_]{0,39})\}", pattern):
                        if ref not in self.concepts:
                            raise ValueError(f"safety[{i}].{fname}: unknown concept {{{ref}}}")
        try:
            engine = self.rule_engine
        except ValueError as exc:
            raise ValueError(f"concepts: {exc}") from None
        problems = engine.check_examples()
        if problems:
            i, fname, msg = problems[0]
            raise ValueError(f"safety[{i}].{fname}: {msg}")
        return self

    @functools.cached_property
    def rule_engine(self) -> RuleEngine:
        """The safety rules compiled (once per loaded pack)."""
        return RuleEngine(self.safety, self.concepts)

    @property
    def version_key(self) -> tuple[Any, ...]:
        return version_key(self.version)

    def template(self, template_id: str) -> Template:
        for t in self.templates:
            if t.id == template_id:
                return t
        raise TemplateError(f"pack {self.id} has no template /{template_id}")

    def check(self, text: str, stage: Literal["input", "output"]) -> list[SafetyRule]:
        """The rules of ``stage`` that fire fully on ``text``, ``respond`` rules first."""
        return [h.rule for h in self.evaluate(text, stage) if h.tier == "full"]

    def evaluate(self, text: str, stage: Literal["input", "output"]) -> list[Hit]:
        """Every rule of ``stage`` that fires on ``text``: full hits (``respond`` first), then
        uncertain-tier ones, each with the concepts that matched."""
        return self.rule_engine.evaluate(text, stage)

    def check_doses(self, answer: str, question: str | None = None) -> list[DoseFinding]:
        """Doses ``answer`` states above this pack's documented maxima."""
        return check_doses(self.doses, answer, question)

    def to_toml(self) -> str:
        """The pack as one self-contained TOML file (references inlined)."""
        data = self.model_dump(mode="json", exclude_none=True)
        return tomli_w.dumps(data, multiline_strings=True)

    def canonical(self) -> bytes:
        """What a signature covers: the content, independent of the file layout."""
        data = self.model_dump(mode="json", exclude={"signature"}, exclude_defaults=True)
        for ref in data.get("references", []):
            ref.pop("file", None)
        body = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return SIGNATURE_CONTEXT + body.encode()


def version_key(version: str) -> tuple[Any, ...]:
    """Sort key for semantic versions (a pre-release sorts before its release)."""
    m = re.match(_SEMVER, version)
    if not m:
        raise ValueError(f"not a semantic version: {version}")
    core = tuple(int(x) for x in m.groups()[:3])
    pre = m.group(4)
    if pre is None:
        return (*core, 1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (*core, 0, parts)


def json_schema_text() -> str:
    """The JSON Schema as committed: indented, keys sorted, one final newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the pack format (committed as ``schemas/pack.schema.json``)."""
    schema = Pack.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://bastion.invalid/schemas/pack.schema.json"
    return schema
