"""Domain packs: the file format, loading with precise errors, templates, safety rules,
reference chunking and Ed25519 signatures.

A pack is one TOML file, or a folder with ``pack.toml`` whose references point at Markdown
files beside it. Loading validates everything up front (pydantic, ``extra="forbid"``; regular
expressions compiled; every safety rule checked against its own positive and negative
examples; template placeholders checked against the declared variables) and reports the first
problems as ``FILE line N: field.path: message``. Nothing here touches the vault; the use cases
that store packs and build turns with them are in :mod:`app.pack_chat`.
"""

from __future__ import annotations

import base64
import json
import re
import string
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.settings import SamplingSettings

FORMAT_VERSION = 1
MAX_PACK_BYTES = 1_000_000
"""Largest ``pack.toml`` (or single-file pack) accepted."""
MAX_REFERENCE_BYTES = 200_000
"""Largest single reference document in a folder pack."""
MAX_TOTAL_BYTES = 4_000_000
"""Largest pack in total (TOML plus every reference document)."""
MAX_PATTERN_CHARS = 400
SIGNATURE_CONTEXT = b"bastion-pack-signature-v1\n"
KEY_PREFIX = "ed25519:"

_ID = r"^[a-z0-9][a-z0-9-]{0,39}$"
_SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$"
)


class PackError(Exception):
    """A pack cannot be used: the first line names the file, line and field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)


class SignatureMismatchError(PackError):
    """The pack carries a signature that does not match its content: refuse it."""


class TemplateError(ValueError):
    """A template cannot be filled in with the values given."""


# -- the format -------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


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
    safety: list[SafetyRule] = Field(default_factory=list, max_length=200)
    references: list[Reference] = Field(default_factory=list, max_length=500)
    eval: list[EvalQuestion] = Field(default_factory=list, max_length=1000)
    signature: Signature | None = None

    @model_validator(mode="after")
    def _ids_unique(self) -> Pack:
        _unique(self.templates, "templates")
        _unique(self.safety, "safety rules")
        _unique(self.references, "references")
        return self

    @property
    def version_key(self) -> tuple[Any, ...]:
        return version_key(self.version)

    def template(self, template_id: str) -> Template:
        for t in self.templates:
            if t.id == template_id:
                return t
        raise TemplateError(f"pack {self.id} has no template /{template_id}")

    def check(self, text: str, stage: Literal["input", "output"]) -> list[SafetyRule]:
        """The rules of ``stage`` that fire on ``text``, ``respond`` rules first."""
        hits = [r for r in self.safety if r.stage == stage and r.matches(text)]
        return sorted(hits, key=lambda r: r.action != "respond")

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


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the pack format (committed as ``schemas/pack.schema.json``)."""
    schema = Pack.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://bastion.invalid/schemas/pack.schema.json"
    return schema


# -- loading with file and line in every error --------------------------------------------


def _toml_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map each table and key path of a TOML text to its line (1-based).

    A small line scanner, enough for error messages: it follows ``[table]`` and
    ``[[array.of.tables]]`` headers (counting array items) and ``key =`` lines, and skips the
    inside of multi-line strings.
    """
    where: dict[tuple[Any, ...], int] = {}
    counts: dict[tuple[Any, ...], int] = {}
    table: tuple[Any, ...] = ()
    in_string: str | None = None

    def resolve(parts: list[str]) -> tuple[Any, ...]:
        path: tuple[Any, ...] = ()
        for part in parts:
            path = (*path, part)
            if path in counts:
                path = (*path, counts[path] - 1)
        return path

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if in_string:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        if line.startswith("[["):
            parts = [p.strip().strip("\"'") for p in line.strip("[] ").split(".")]
            parent = resolve(parts[:-1])
            key = (*parent, parts[-1])
            counts[key] = counts.get(key, 0) + 1
            table = (*key, counts[key] - 1)
            where.setdefault(key, lineno)
            where[table] = lineno
            continue
        if line.startswith("["):
            parts = [p.strip().strip("\"'") for p in line.strip("[] ").split(".")]
            table = resolve(parts)
            where.setdefault(table, lineno)
            continue
        m = re.match(r"^([A-Za-z0-9_\-.\"' ]+?)\s*=", line)
        if m:
            key_parts = [p.strip().strip("\"'") for p in m.group(1).split(".")]
            where.setdefault((*table, *key_parts), lineno)
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    in_string = quote
    return where


def _line_of(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problems(exc: ValidationError, name: str, lines: dict[tuple[Any, ...], int]) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(x for x in err["loc"] if x not in ("function-after",))
        line = _line_of(lines, loc)
        where = f"{name} line {line}" if line else name
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        field = _dotted(loc) or "pack"
        problems.append(f"{where}: {field}: {msg}")
    return problems


def parse(text: str, *, name: str = "pack.toml", folder: Path | None = None) -> Pack:
    """Validate a pack's TOML text; ``folder`` resolves ``file`` references.

    Raises:
        PackError: with every problem found, each naming ``name``, the line and the field.
    """
    if len(text.encode()) > MAX_PACK_BYTES:
        raise PackError([f"{name}: larger than {MAX_PACK_BYTES // 1000} KB"])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"^(.*) \(at line (\d+), column (\d+)\)$", str(exc))
        where, what = (f"{name} line {m[2]}", f"{m[1]} (column {m[3]})") if m else (name, str(exc))
        raise PackError([f"{where}: not valid TOML: {what}"]) from None
    lines = _toml_lines(text)
    try:
        pack = Pack.model_validate(data)
    except ValidationError as exc:
        raise PackError(_problems(exc, name, lines)) from None
    total = len(text.encode())
    problems = []
    for i, ref in enumerate(pack.references):
        if ref.file is None:
            continue
        line = _line_of(lines, ("references", i, "file"))
        where = f"{name} line {line}: references[{i}].file"
        if folder is None:
            problems.append(f"{where}: a single-file pack cannot refer to files; use `text`")
            continue
        try:
            ref.text = _read_reference(folder, ref.file)
        except PackError as exc:
            problems.append(f"{where}: {exc}")
            continue
        total += len(ref.text.encode())
        if total > MAX_TOTAL_BYTES:
            problems.append(f"{name}: the pack is larger than {MAX_TOTAL_BYTES // 1000} KB")
            break
    if problems:
        raise PackError(problems)
    for ref in pack.references:
        ref.file = None
    return pack


def _read_reference(folder: Path, relative: str) -> str:
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts or relative.startswith("~"):
        raise PackError([f"{relative!r} must be a path inside the pack folder"])
    if rel.suffix.lower() not in (".md", ".txt"):
        raise PackError([f"{relative!r} is not a Markdown or text file"])
    base = folder.resolve()
    try:
        target = (base / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        raise PackError([f"{relative!r} does not exist"]) from None
    if not target.is_relative_to(base):
        raise PackError([f"{relative!r} leads outside the pack folder"])
    if not target.is_file():
        raise PackError([f"{relative!r} is not a file"])
    if target.stat().st_size > MAX_REFERENCE_BYTES:
        raise PackError([f"{relative!r} is larger than {MAX_REFERENCE_BYTES // 1000} KB"])
    try:
        return target.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PackError([f"{relative!r} is not UTF-8 text"]) from None


def load(path: Path) -> Pack:
    """A pack from a TOML file or a folder holding ``pack.toml``.

    Raises:
        PackError: the pack is malformed (every message names the file, line and field).
    """
    path = Path(path)
    folder = None
    if path.is_dir():
        folder, path = path, path / "pack.toml"
    try:
        size = path.stat().st_size
        if size > MAX_PACK_BYTES:
            raise PackError([f"{path.name}: larger than {MAX_PACK_BYTES // 1000} KB"])
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PackError([f"{path}: no such pack file"]) from None
    except IsADirectoryError:
        raise PackError([f"{path}: is a folder without pack.toml"]) from None
    except OSError as exc:
        raise PackError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PackError([f"{path.name}: not UTF-8 text"]) from None
    return parse(text, name=path.name, folder=folder)


# -- built-in packs -----------------------------------------------------------------------

BUILTIN_SIGNER = "built-in"


def builtin_ids() -> list[str]:
    root = resources.files("app") / "builtin_packs"
    return sorted(p.name for p in root.iterdir() if (p / "pack.toml").is_file())


def builtin_path(pack_id: str) -> Path:
    return Path(str(resources.files("app") / "builtin_packs" / pack_id))


def builtin(pack_id: str) -> Pack:
    """A pack shipped with Bastion (validated like any other)."""
    if pack_id not in builtin_ids():
        raise PackError([f"no built-in pack {pack_id!r}"])
    return load(builtin_path(pack_id))


# -- references -> chunks -----------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """A piece of a reference document small enough to quote in a prompt."""

    ref_id: str
    n: int
    title: str
    source: str
    text: str


def chunks(pack: Pack, max_chars: int = 240) -> list[Chunk]:
    """Split every reference into paragraph-aligned chunks of at most ``max_chars``
    (a longer paragraph is split at sentence ends)."""
    out: list[Chunk] = []
    for ref in pack.references:
        pieces: list[str] = []
        heading = ""
        for para in re.split(r"\n\s*\n", ref.text or ""):
            para = " ".join(para.split())
            if not para:
                continue
            if para.startswith("#"):
                heading = para.lstrip("# ")
                continue
            sentences = re.split(r"(?<=[.!?])\s+", para)
            current = ""
            for sentence in sentences:
                if current and len(current) + 1 + len(sentence) > max_chars:
                    pieces.append(current)
                    current = ""
                current = f"{current} {sentence}".strip()
            if current:
                pieces.append(f"{heading}: {current}" if heading else current)
        for n, text in enumerate(pieces):
            out.append(Chunk(ref.id, n, ref.title, ref.source, text))
    return out


# -- signatures ---------------------------------------------------------------------------


class Trust(StrEnum):
    """How far an installed pack is trusted."""

    BUILTIN = "built-in"
    VERIFIED = "verified"
    UNTRUSTED = "signed, key not trusted"
    UNSIGNED = "unsigned"


def public_key_text(raw: bytes) -> str:
    return KEY_PREFIX + base64.b64encode(raw).decode()


def parse_public_key(text: str) -> Any:
    """An Ed25519 public key from ``ed25519:<base64>``.

    Raises:
        PackError: not such a key.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = text.strip()
    if not text.startswith(KEY_PREFIX):
        raise PackError([f"a public key starts with {KEY_PREFIX!r}"])
    try:
        raw = base64.b64decode(text[len(KEY_PREFIX) :], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise PackError(["not a valid Ed25519 public key"]) from None


def new_signing_key() -> tuple[bytes, str]:
    """A new Ed25519 key: (private key as PKCS#8 PEM, public key text)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return pem, public_key_text(raw)


def load_signing_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise PackError(["the key file is not an unencrypted PEM private key"]) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PackError(["the key file does not hold an Ed25519 key"])
    return key


def signature_for(pack: Pack, key: Any, signer: str) -> Signature:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    value = base64.b64encode(key.sign(pack.canonical())).decode()
    return Signature(public_key=public_key_text(raw), signer=signer, value=value)


def signed_toml(text: str, signature: Signature) -> str:
    """``text`` (a pack.toml) with its ``[signature]`` table replaced by ``signature``."""
    lines = text.splitlines()
    out: list[str] = []
    skipping = False
    for line in lines:
        stripped = line.strip()
        if stripped == "[signature]":
            skipping = True
            continue
        if skipping and stripped.startswith("["):
            skipping = False
        if not skipping:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    block = tomli_w.dumps({"signature": signature.model_dump(mode="json")})
    return "\n".join(out) + "\n\n" + block


def verify(pack: Pack, trusted: Mapping[str, str]) -> tuple[Trust, str | None]:
    """How far ``pack`` is trusted, and by whom; ``trusted`` maps public keys to names.

    Raises:
        SignatureMismatchError: the pack is signed but the signature does not match.
    """
    from cryptography.exceptions import InvalidSignature

    sig = pack.signature
    if sig is None:
        return Trust.UNSIGNED, None
    key = parse_public_key(sig.public_key)
    try:
        key.verify(base64.b64decode(sig.value), pack.canonical())
    except (InvalidSignature, ValueError):
        raise SignatureMismatchError(
            [f"pack {pack.id} {pack.version}: the signature does not match its content"]
        ) from None
    if sig.public_key in trusted:
        return Trust.VERIFIED, trusted[sig.public_key]
    return Trust.UNTRUSTED, sig.signer
