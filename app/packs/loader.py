"""Loading a pack from TOML with the file, line and field in every error."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bastion.app.packs.base import MAX_PACK_BYTES, MAX_REFERENCE_BYTES, MAX_TOTAL_BYTES, PackError
from bastion.app.packs.format import Pack
from bastion.app.terminal import visible
from bastion.storage.files import UnsafeFileError, read_regular

MAX_TOML_DEPTH = 32
_TOML_TOKENS = re.compile(
    r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*|[\[\]{}]'
)


def _nesting(text: str) -> int:
    """The deepest nesting of arrays and inline tables in a TOML text (strings and comments
    skipped), measured before the recursive parser sees it."""
    depth = deepest = 0
    for m in _TOML_TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth = max(0, depth - 1)
    return deepest


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
        msg = str(err["msg"]).removeprefix("Value error, ")
        inner = re.match(r"^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*): (.*)$", msg, re.S)
        if not loc and inner:
            # A whole-pack check (rule examples, concepts) names the field in its message.
            loc = tuple(int(p) if p.isdigit() else p for p in re.findall(r"[a-z_]+|\d+", inner[1]))
            msg = inner[2]
        line = _line_of(lines, loc)
        where = f"{name} line {line}" if line else name
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        # Keys and messages can quote the file (a pattern that does not compile): one line.
        field = visible(_dotted(loc)) or "pack"
        problems.append(f"{where}: {field}: {visible(msg)}")
    return problems


def parse(text: str, *, name: str = "pack.toml", folder: Path | None = None) -> Pack:
    """Validate a pack's TOML text; ``folder`` resolves ``file`` references.

    Raises:
        PackError: with every problem found, each naming ``name``, the line and the field.
    """
    if len(text.encode()) > MAX_PACK_BYTES:
        raise PackError([f"{name}: larger than {MAX_PACK_BYTES // 1000} KB"])
    depth = _nesting(text)
    if depth > MAX_TOML_DEPTH:
        raise PackError([f"{name}: nested deeper than {MAX_TOML_DEPTH} levels"])
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise PackError([f"{name}: nested too deeply"]) from None
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"^(.*) \(at line (\d+), column (\d+)\)$", str(exc))
        where, what = (f"{name} line {m[2]}", f"{m[1]} (column {m[3]})") if m else (name, str(exc))
        raise PackError([f"{where}: not valid TOML: {what}"]) from None
    except ValueError:  # e.g. an integer longer than Python converts (4,300 digits)
        raise PackError([f"{name}: not valid TOML: a number is too large"]) from None
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
    try:
        raw = read_regular(target, MAX_REFERENCE_BYTES)
    except UnsafeFileError:
        raise PackError(
            [f"{relative!r} is not a regular file of at most {MAX_REFERENCE_BYTES // 1000} KB"]
        ) from None
    except OSError as exc:
        raise PackError([f"{relative!r}: cannot read: {exc.strerror}"]) from None
    try:
        return raw.decode("utf-8")
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
        # Regular files only (a FIFO or a symlink to /dev/zero is refused without blocking),
        # the size counted on the bytes read.
        raw = read_regular(path, MAX_PACK_BYTES)
    except UnsafeFileError as exc:  # "FILE: what is wrong", like every other pack problem
        text = str(exc).replace(f"{MAX_PACK_BYTES} bytes", f"{MAX_PACK_BYTES // 1000} KB")
        raise PackError([text.removeprefix("refusing to read ")]) from None
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
