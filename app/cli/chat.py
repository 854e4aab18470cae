"""Models and answers: ``models`` and ``ask``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from bastion.app import model_choice, pack_library, paths, turn
from bastion.app.cli.common import (
    EXIT_ERROR,
    UsageError,
    add_passphrase_fd,
    open_vault,
    printable,
)
from bastion.app.documents import library
from bastion.app.packs import Pack
from bastion.app.session import ChatSession, PackContextError
from bastion.models import compute, memory
from bastion.models.discovery import HashCache, ModelInfo, ModelSource, describe, split_parts
from bastion.models.engine import TurnStats
from bastion.models.gguf import GGUFError, open_regular, read_header
from bastion.models.settings import LoadSettings, SamplingSettings


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


# -- models


def _default_context(info: ModelInfo, load: LoadSettings) -> int:
    trained = info.context_length
    return min(load.n_ctx, trained) if trained else load.n_ctx


def _memory_columns(info: ModelInfo, load: LoadSettings, avail: int | None) -> tuple[str, str]:
    """(memory needed at the default context, whether it fits) for one model."""
    if not info.usable or info.shape is None:
        return "-", "-"
    need = memory.estimate(info.shape, _default_context(info, load), load.n_batch).total
    if avail is None:
        return memory.format_bytes(need), "?"
    if need <= avail:
        return memory.format_bytes(need), "yes"
    smaller = memory.largest_context(info.shape, avail, _default_context(info, load), load.n_batch)
    fit = f"at {smaller} tokens" if smaller else "no"
    return memory.format_bytes(need), fit


def _status(m: ModelInfo) -> str:
    if not m.usable:
        return f"unusable: {m.reason}"
    if not m.chat_template:
        return "usable (no chat template: a fallback format)"
    return "usable"


def cmd_models(args: argparse.Namespace) -> int:
    found = model_choice.find_models(Path(args.model) if args.model else None)
    load = LoadSettings()
    avail = memory.available_memory()
    if args.json:
        rows_json = []
        for m in found:
            data = m.model_dump(mode="json", exclude={"chat_template", "shape"})
            need, fit = _memory_columns(m, load, avail)
            data["has_chat_template"] = bool(m.chat_template)
            data["default_context"] = _default_context(m, load)
            data["memory_needed"] = (
                memory.estimate(m.shape, _default_context(m, load), load.n_batch).total
                if m.usable and m.shape
                else None
            )
            data["fits"] = fit
            rows_json.append(data)
        print(json.dumps(rows_json))
        return 0
    rows: list[tuple[str, ...]] = [
        ("NAME", "SOURCE", "ARCH", "SIZE", "PARAMS", "QUANT", "CONTEXT", "MEMORY", "FITS")
    ]
    rows[0] += ("STATUS",)
    for m in found:
        need, fit = _memory_columns(m, load, avail)
        rows.append(
            (
                printable(m.name),
                m.source.value,
                printable(m.architecture or "?"),
                _human_size(m.file_size),
                printable(m.parameters or "?"),
                printable(m.quantization or "?"),
                str(m.context_length or "?"),
                need,
                fit,
                printable(_status(m)),
            )
        )
    if len(rows) == 1:
        print("no models found; the embedded one is installed by `make run`", file=sys.stderr)
        return EXIT_ERROR
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    ctx = load.n_ctx
    note = f"MEMORY: needed at the default context ({ctx} tokens, or less if trained with less)"
    if avail is not None:
        note += f"; {memory.format_bytes(avail)} available now"
    print(note, file=sys.stderr)
    return 0


def cmd_models_add(args: argparse.Namespace) -> int:
    """Check a GGUF file's header and put it in the models folder (a hard link when the file
    is on the same file system, else a copy), recording its SHA-256."""
    src = Path(args.path).expanduser()
    info = describe(src, ModelSource.EXPLICIT)
    if not info.usable:
        raise UsageError(f"bastion models add: {src.name}: {info.reason}")
    folder = paths.models_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        header = read_header(src)
    except (GGUFError, OSError) as exc:
        raise UsageError(f"bastion models add: {src.name}: {exc}") from None
    added = []
    for part in split_parts(src, header):
        dest = folder / part.name
        if dest.exists():
            raise UsageError(f"bastion models add: {dest.name} is already in the models folder")
        if args.copy:
            _copy(part, dest)
        else:
            try:
                os.link(part, dest)
            except OSError:
                _copy(part, dest)
        added.append(dest)
    digest = HashCache(paths.cache_dir() / "model-hashes.json").sha256(added[0])
    print(f"added {printable(info.name)} to {folder} (sha256 {digest})")
    return 0


def _copy(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with open_regular(src) as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- ask


def _sampling(args: argparse.Namespace, base: SamplingSettings | None = None) -> SamplingSettings:
    values = {
        k: v
        for k, v in {
            "max_tokens": args.max_tokens,
            "temperature": args.temperature,
            "seed": args.seed,
        }.items()
        if v is not None
    }
    try:
        return SamplingSettings(**{**(base.model_dump() if base else {}), **values})
    except ValueError as exc:
        raise UsageError(f"bastion ask: {_first_error(exc)}") from None


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = ".".join(str(x) for x in first.get("loc", ()))
        return f"{loc.replace('_', '-')}: {first.get('msg')}"
    return str(exc)


def format_stats(stats: TurnStats) -> str:
    line = (
        f"[stats] prompt {stats.prompt_tokens} tokens ({stats.prompt_tokens_evaluated} "
        f"evaluated), {stats.generated_tokens} generated, first token "
        f"{stats.time_to_first_token_s:.2f} s, {stats.decode_tokens_per_s:.1f} tok/s, "
        f"stop: {stats.stop_reason.value}, context {stats.context_used}/{stats.context_size}"
    )
    if stats.dropped_messages:
        line += f", left out {len(stats.dropped_messages)} older messages"
    return line


def _question(args: argparse.Namespace, pack: Pack | None) -> tuple[str, str | None]:
    """The question, and for a template the text to search the references with (its values)."""
    if args.template:
        if pack is None:
            raise UsageError("bastion ask: --template needs --pack")
        values = {}
        for item in args.var or []:
            name, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"bastion ask: --var {item!r} is not NAME=VALUE")
            values[name.strip()] = value
        return pack.template(args.template).render(values), " ".join(values.values())
    if args.question is None:
        raise UsageError("bastion ask: give a question (or --template with --pack)")
    question = sys.stdin.read() if args.question == "-" else args.question
    if not question.strip():
        raise UsageError("bastion ask: the question is empty")
    return question, None


def _session(args: argparse.Namespace, stack: contextlib.ExitStack) -> ChatSession:
    """The session the answer goes through: on the vault when saving or continuing (or for a
    pack, if a vault exists, for imported packs), else in memory only (nothing written)."""
    wants_vault = args.pack or args.doc
    if args.save or args.cont or (wants_vault and paths.vault_exists()):
        return ChatSession.over(stack.enter_context(open_vault(args)))
    return ChatSession.ephemeral()


def _attach(session: ChatSession, refs: list[str]) -> None:
    """``--doc ID|FILE``: a library document, or a file (added to the library first; with no
    vault, read into this process's memory only)."""
    for ref in refs:
        if not paths.vault_exists() and not library.looks_like_path(ref):
            raise UsageError(f"bastion ask: --doc {ref}: no vault to find a document id in")
        doc = session.attach(ref)
        print(f"bastion: using {printable(doc.title)} ({doc.id[:12]})", file=sys.stderr)


def _progress(done: int, total: int) -> None:
    if done < total:
        print(f"bastion: reading the document, part {done + 1} of {total}", file=sys.stderr)


def cmd_ask(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        session = _session(args, stack)
        session.preferred_model = args.model
        session.system = args.system
        saving = bool(args.save or args.cont)
        if args.cont:
            session.require_conversation_model = True
            conv = session.store.find_conversation(args.cont)
            if conv.pack_id and args.pack and args.pack != conv.pack_id:
                raise UsageError(f"bastion ask: that conversation uses pack {conv.pack_id}")
            session.open(conv.id)
            pack_id = args.pack or conv.pack_id
            if session.pack is None and pack_id:
                session.pack = pack_library.get(session.store, pack_id).pack
        else:
            session.new_conversation(incognito=not saving, pack_id=args.pack)
        _attach(session, args.doc or [])
        question, lookup = _question(args, session.pack)
        session.sampling_override = _sampling(args, session.sampling())
        pending = session.send(question, lookup)
        pending.progress = _progress
        for notice in pending.notices:
            if notice.action == "caution":
                print(f"[caution] {printable(notice.message, keep_newlines=True)}\n")
        pieces: list[str] = []
        shown = False

        def write() -> None:
            nonlocal shown
            gen = session.generate(pending)  # a whole document is read here, part by part
            for piece in gen:
                if not shown and args.show_reasoning and gen.stats.reasoning:
                    print(f"[reasoning] {printable(gen.stats.reasoning, keep_newlines=True)}\n")
                shown = True
                pieces.append(piece)
                sys.stdout.write(printable(piece, keep_newlines=True))
                sys.stdout.flush()

        try:
            # Printed from the thread that runs llama.cpp: the answer is computed inline, not
            # handed over token by token (bastion.models.compute). Ctrl-C sets the cancel
            # event and waits for the generation to stop.
            compute.run(write, cancel=pending.cancel)
        except PackContextError as exc:
            raise UsageError(f"bastion ask: {exc}") from None
        except KeyboardInterrupt:
            pending.cancel.set()
        gen = pending.generation
        if gen is None:  # interrupted before the answer could start
            print("bastion: interrupted", file=sys.stderr)
            return 130
        sys.stdout.write("\n")
        if args.show_reasoning and gen.stats.reasoning and not shown:
            print(f"[reasoning] {printable(gen.stats.reasoning, keep_newlines=True)}")
        answer = session.finish(pending, "".join(pieces))
        if answer.meta.sources:
            print(f"\nSources: {printable(turn.sources_line(answer.meta.sources))}")
        for notice in answer.meta.safety:
            if notice.stage == "output":
                print(f"\n[caution] {printable(notice.message, keep_newlines=True)}")
        for notice in answer.meta.safety:
            if notice.stage == "citations":
                print(f"[check] {printable(notice.message)}")
        sys.stdout.flush()
        if pending.response is None:
            if args.stats:
                print(format_stats(gen.stats), file=sys.stderr)
            elif gen.stats.dropped_messages:
                print(
                    f"bastion: {len(gen.stats.dropped_messages)} older messages did not fit the "
                    "context and were left out",
                    file=sys.stderr,
                )
        if saving and session.conversation is not None:
            print(f"bastion: saved in conversation {session.conversation.id}", file=sys.stderr)
    return 0


def add_parsers(sub: Any) -> None:
    """Register this family's commands."""
    p = sub.add_parser(
        "models", help="list the models found on this machine (or `models add PATH`)"
    )
    p.add_argument("--model", metavar="PATH", help="also describe this GGUF file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)
    msub = p.add_subparsers(dest="models_command", metavar="{add}")
    a = msub.add_parser("add", help="check a GGUF file and add it to the models folder")
    a.add_argument("path", metavar="PATH", help="the GGUF file (the first part of a split one)")
    a.add_argument("--copy", action="store_true", help="copy the file instead of linking it")
    a.set_defaults(func=cmd_models_add)

    p = sub.add_parser("ask", help="ask one question; the answer streams to stdout")
    p.add_argument("question", nargs="?", help="the question, or - to read it from stdin")
    p.add_argument("--model", metavar="NAME|PATH", help="model name (see `models`) or GGUF path")
    p.add_argument("--system", metavar="TEXT", help="system prompt")
    p.add_argument("--pack", metavar="ID", help="answer with a domain pack (see `packs list`)")
    p.add_argument("--template", metavar="ID", help="use a template of the pack")
    p.add_argument(
        "--doc",
        action="append",
        metavar="ID|FILE",
        help="answer from a document (library id, or a file, added first); repeatable",
    )
    p.add_argument("--var", action="append", metavar="NAME=VALUE", help="a template variable")
    p.add_argument("--max-tokens", type=int, metavar="N")
    p.add_argument("--temperature", type=float, metavar="T")
    p.add_argument("--seed", type=int, metavar="N")
    p.add_argument("--stats", action="store_true", help="print generation statistics to stderr")
    p.add_argument(
        "--show-reasoning",
        action="store_true",
        help="also print the model's reasoning (<think>), which is hidden by default",
    )
    p.add_argument("--save", action="store_true", help="save the exchange in the vault")
    p.add_argument(
        "--continue", dest="cont", metavar="ID", help="continue a saved conversation (saves)"
    )
    add_passphrase_fd(p)
    p.set_defaults(func=cmd_ask)
