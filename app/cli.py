"""The ``bastion`` command line.

Every failure the user can cause (no model, wrong passphrase, bad option...) ends as one
line on stderr and exit code 1 (2 for usage errors); never a traceback. Diagnostics name
ids, never message text.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from app import __version__, chat, cli_packs, pack_chat, paths, transfer
from app.cli_common import (
    EXIT_ERROR,
    EXIT_USAGE,
    Parser,
    UsageError,
    add_decryption_args,
    add_encryption_args,
    add_passphrase_fd,
    confirm,
    decrypt_file,
    encryption,
    open_vault,
    printable,
    read_export,
    vault_dir,
)
from app.packs import Pack, PackError, TemplateError
from app.secrets_input import PassphraseError, read_passphrase
from models.discovery import ModelInfo, NoModelError
from models.engine import EngineError, TurnStats
from models.gguf import GGUFError
from models.settings import SamplingSettings
from storage import crypto
from storage import export as export_fmt
from storage.export import ExportError
from storage.schema import Message
from storage.store import StoreError
from storage.vault import UnlockError, Vault, VaultError, memory_store


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


# -- models -------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    found = chat.find_models(Path(args.model) if args.model else None)
    if args.json:
        print(json.dumps([m.model_dump(mode="json", exclude={"chat_template"}) for m in found]))
        return 0
    rows = [("NAME", "SOURCE", "SIZE", "PARAMS", "QUANT", "CONTEXT", "STATUS")]
    for m in found:
        rows.append(
            (
                m.name,
                m.source.value,
                _human_size(m.file_size),
                m.parameters or "?",
                m.quantization or "?",
                str(m.context_length or "?"),
                "usable" if m.usable else f"unusable: {m.reason}",
            )
        )
    if len(rows) == 1:
        print("no models found; the embedded one is installed by `make run`", file=sys.stderr)
        return EXIT_ERROR
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return 0


# -- ask ----------------------------------------------------------------------


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


def cmd_ask(args: argparse.Namespace) -> int:
    info = chat.pick_model(args.model)
    with contextlib.ExitStack() as stack:
        vault = None
        # Saving needs the vault (open_vault says how to create one); a pack uses it if it
        # exists, for imported packs.
        if args.save or args.cont or (args.pack and (vault_dir() / "vault.hdr").exists()):
            vault = stack.enter_context(open_vault(args))
        # Without a vault, built-in packs work from a memory-only store (nothing on disk).
        store = vault.store if vault is not None else (memory_store() if args.pack else None)
        history: list[Message] = []
        conv = None
        pack_id = args.pack
        if vault is not None and args.cont:
            conv = vault.store.find_conversation(args.cont)
            history = vault.store.thread(conv.id)
            if conv.pack_id and pack_id and pack_id != conv.pack_id:
                raise UsageError(f"bastion ask: that conversation uses pack {conv.pack_id}")
            pack_id = pack_id or conv.pack_id
        pack = None
        if pack_id:
            assert store is not None
            pack_chat.install_builtins(store)
            pack = pack_chat.get(store, pack_id).pack
        question, lookup = _question(args, pack)
        sampling = _sampling(args, pack.sampling if pack else None)
        engine = chat.load_engine(info)
        if pack is not None and engine.n_ctx < pack.min_context:
            raise UsageError(
                f"bastion ask: pack {pack.id} needs a context of {pack.min_context} tokens; "
                f"the model is loaded with {engine.n_ctx}"
            )
        grounded = pack_chat.GroundedTurn()
        if pack is not None:
            assert store is not None
            grounded = pack_chat.check_question(
                store, pack, question, lambda t: len(engine.tokenize(t)), lookup
            )
            for notice in grounded.notices:
                if notice.action == "caution":
                    print(f"[caution] {notice.message}\n")
        stats = None
        extra: dict[str, Any] = {}
        if grounded.response is not None:
            text = grounded.response
            print(text)
            extra = {"fixed_response": True, "safety": grounded.user_stats.get("safety", [])}
        else:
            if pack is not None:
                messages = pack_chat.model_messages(
                    pack, [*history, pack_chat.pending_question(question, grounded.user_stats)]
                )
            else:
                messages = chat.build_messages(question, system=args.system, history=history)
            gen = chat.answer(engine, messages, sampling)
            stats = gen.stats
            pieces = []
            try:
                for piece in gen:
                    pieces.append(piece)
                    sys.stdout.write(piece)
                    sys.stdout.flush()
            except KeyboardInterrupt:
                gen.stats.stop_reason = gen.stats.stop_reason.CANCELLED
            sys.stdout.write("\n")
            text = "".join(pieces)
            if pack is not None:
                sources = grounded.user_stats.get("sources", [])
                if sources:
                    print(f"\nSources: {pack_chat.sources_line(sources)}")
                    extra["sources"] = [
                        {k: s[k] for k in ("n", "ref_id", "title", "source")} for s in sources
                    ]
                notices = pack_chat.answer_notices(pack, text)
                for notice in notices:
                    print(f"\n[caution] {notice.message}")
                if notices:
                    extra["safety"] = [n.as_dict() for n in notices]
            sys.stdout.flush()
            if args.stats:
                print(format_stats(gen.stats), file=sys.stderr)
            elif gen.stats.dropped_messages:
                print(
                    f"bastion: {len(gen.stats.dropped_messages)} older messages did not fit the "
                    "context and were left out",
                    file=sys.stderr,
                )
        if vault is not None and (args.save or args.cont):
            if conv is None:
                conv = chat.start_conversation(
                    vault.store,
                    question,
                    info,
                    sampling,
                    system=None if pack else args.system,
                    pack_id=pack.id if pack else None,
                    pack_version=pack.version if pack else None,
                )
            chat.save_turn(
                vault.store,
                conv.id,
                question,
                text,
                stats,
                user_stats=grounded.user_stats,
                answer_extra=extra,
            )
            print(f"bastion: saved in conversation {conv.id}", file=sys.stderr)
    return 0


# -- vault --------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    folder = vault_dir()
    if (folder / "vault.hdr").exists() or (folder / "vault.db").exists():
        raise VaultError(f"a vault already exists in {folder}")
    if args.passphrase_fd is None and not os.environ.get("BASTION_PASSPHRASE"):
        print(
            "Choose a passphrase. It cannot be recovered: if you forget it, the vault is lost.",
            file=sys.stderr,
        )
    pw = read_passphrase(fd=args.passphrase_fd, confirm=True)
    try:
        kdf = crypto.KdfParams(memory_kib=args.kdf_memory_mib * 1024, passes=args.kdf_passes)
        kdf.check()
    except ValueError as exc:
        raise UsageError(f"bastion init: {exc}") from None
    paths.ensure_private_dir(paths.data_dir())
    try:
        Vault.create(folder, pw, kdf).close()
    finally:
        crypto.wipe(pw)
    print(f"bastion: vault created in {folder}", file=sys.stderr)
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        new = read_passphrase(
            fd=args.new_passphrase_fd,
            env="BASTION_NEW_PASSPHRASE",
            prompt="New passphrase: ",
            confirm=True,
        )
        try:
            vault.change_passphrase(new)
        finally:
            crypto.wipe(new)
    print("bastion: passphrase changed", file=sys.stderr)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        store = vault.store
        if args.action == "list":
            convs = store.list_conversations()
            if args.json:
                print(
                    json.dumps(
                        [
                            {
                                "id": c.id,
                                "title": c.title,
                                "updated": c.updated.isoformat(),
                                "created": c.created.isoformat(),
                                "pinned": c.pinned,
                                "model": c.model_name,
                                "pack": c.pack_id,
                            }
                            for c in convs
                        ]
                    )
                )
            else:
                for c in convs:
                    pin = "*" if c.pinned else " "
                    print(f"{c.id[:12]} {pin} {c.updated:%Y-%m-%d %H:%M}  {c.title}")
        elif args.action == "show":
            conv = store.find_conversation(args.id)
            msgs = store.thread(conv.id)
            if args.json:
                print(
                    json.dumps(
                        {
                            "conversation": conv.model_dump(mode="json"),
                            "messages": [m.model_dump(mode="json") for m in msgs],
                        }
                    )
                )
            else:
                print(f"# {conv.title}\n")
                for m in msgs:
                    print(f"## {m.role} ({m.created:%Y-%m-%d %H:%M})\n\n{m.content}\n")
        elif args.action == "search":
            conv_id = store.find_conversation(args.conversation).id if args.conversation else None
            hits = store.search(
                args.query,
                conversation_id=conv_id,
                pack_id=args.pack,
                role=args.role,
                since=args.since,
                until=args.until,
            )
            if args.json:
                print(json.dumps([h.model_dump(mode="json") for h in hits]))
            else:
                for h in hits:
                    where = h.role or "title"
                    print(f"{h.conversation_id}  {where:9}  {h.snippet}")
        elif args.action == "delete":
            conv = store.find_conversation(args.id)
            store.delete_conversation(conv.id)
            print(f"bastion: deleted conversation {conv.id}", file=sys.stderr)
        elif args.action == "rename":
            conv = store.find_conversation(args.id)
            store.rename_conversation(conv.id, args.title)
        elif args.action == "pin":
            conv = store.find_conversation(args.id)
            store.set_pinned(conv.id, not args.off)
    return 0


# -- export, verify, import, backup ------------------------------------------


def cmd_keys(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        existing = transfer.vault_identity(vault.store)
        if args.action == "new":
            if existing is not None and not args.force:
                raise ExportError("the vault already has an age identity (--force replaces it)")
            vault.store.set_setting(transfer.IDENTITY_KEY, None)
            identity = transfer.ensure_identity(vault.store)
        else:
            identity = existing
            if identity is None:
                raise ExportError("the vault has no age identity yet: run `bastion keys new`")
        print(export_fmt.public_key(identity))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if not args.all and not args.id:
        raise UsageError("bastion export: give a conversation ID or --all")
    if args.passphrase and args.recipient:
        raise UsageError("bastion export: use --passphrase or --recipient, not both")
    out = Path(args.out)
    recipients = [export_fmt.parse_recipient(r) for r in args.recipient or []]
    with open_vault(args) as vault:
        ids = None if args.all else [vault.store.find_conversation(args.id).id]
        doc, redaction = transfer.build_export(vault.store, ids, redact=args.redact)
        if redaction is not None:
            print(f"bastion: redacted {redaction.summary()}", file=sys.stderr)
            if not args.yes and not confirm("Export with these redactions?"):
                print("bastion: export cancelled", file=sys.stderr)
                return EXIT_ERROR
        recipients, passphrase = encryption(args, vault, recipients)
        plaintext = transfer.render(doc, args.format)
    ciphertext = export_fmt.encrypt(plaintext, recipients=recipients, passphrase=passphrase)
    export_fmt.write_encrypted(out, ciphertext)
    n = len(doc["conversations"])
    print(f"bastion: exported {n} conversation(s) to {out}", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    data, header = read_export(args)
    if "scrypt" not in header.kinds and not args.identity:  # needs the vault's own identity
        with open_vault(args) as vault:
            plaintext = decrypt_file(args, vault, data, header)
    else:
        plaintext = decrypt_file(args, None, data, header)
    result = transfer.verify(plaintext)
    doc = result.document
    print(f"{doc['format']} v{doc['version']}, exported {doc.get('exported', '?')}")
    for conv, report in zip(doc.get("conversations", []), result.reports, strict=True):
        model = (conv.get("model") or {}).get("name") or "unknown model"
        status = "intact" if report.intact else "ALTERED"
        line = f"- {conv.get('title')!r}: {report.messages} messages, {model}, {status}"
        if not report.intact:
            if report.altered_id:
                line += f" at message {(report.first_altered or 0) + 1} (id {report.altered_id})"
            else:
                line += " (the chain head does not match)"
        print(line)
    if not result.intact:
        print("bastion: the export was altered after it was made", file=sys.stderr)
        return EXIT_ERROR
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    data, header = read_export(args)
    with open_vault(args) as vault:
        doc = export_fmt.parse_document(decrypt_file(args, vault, data, header))
        ids = transfer.import_conversations(vault.store, doc)
    print(f"bastion: imported {len(ids)} conversation(s)", file=sys.stderr)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        doc = transfer.build_backup(vault.store)
        recipients, passphrase = encryption(args, vault, [])
        plaintext = transfer.render(doc, "json")
    export_fmt.write_encrypted(
        Path(args.out), export_fmt.encrypt(plaintext, recipients=recipients, passphrase=passphrase)
    )
    print(f"bastion: backed up {len(doc['conversations'])} conversation(s)", file=sys.stderr)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    data, header = read_export(args)
    with open_vault(args) as vault:
        doc = export_fmt.parse_document(decrypt_file(args, vault, data, header))
        n = transfer.restore_backup(vault.store, doc)
    print(f"bastion: restored {n} conversation(s)", file=sys.stderr)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from app import doctor

    passphrase = None
    if (vault_dir() / "vault.hdr").exists():
        try:
            passphrase = read_passphrase(fd=args.passphrase_fd)
        except PassphraseError as exc:
            print(f"bastion: {exc}; vault checks skipped", file=sys.stderr)
    checks = doctor.run(passphrase)
    if passphrase is None and (vault_dir() / "vault.hdr").exists():
        checks.insert(1, doctor.Check("vault", doctor.WARN, "not unlocked: checks skipped"))
    if args.json:
        print(json.dumps([c.as_dict() for c in checks]))
    else:
        for c in checks:
            print(f"{c.status:4}  {c.name}: {c.detail}")
    return EXIT_ERROR if any(c.status == doctor.FAIL for c in checks) else 0


# -- parser -------------------------------------------------------------------


def _date(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="bastion",
        description="A private AI assistant: a local model and an encrypted vault. "
        "Nothing leaves this machine. Without a command, the chat app starts.",
    )
    parser.add_argument("--version", action="version", version=f"bastion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser("models", help="list the models found on this machine")
    p.add_argument("--model", metavar="PATH", help="also describe this GGUF file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("ask", help="ask one question; the answer streams to stdout")
    p.add_argument("question", nargs="?", help="the question, or - to read it from stdin")
    p.add_argument("--model", metavar="NAME|PATH", help="model name (see `models`) or GGUF path")
    p.add_argument("--system", metavar="TEXT", help="system prompt")
    p.add_argument("--pack", metavar="ID", help="answer with a domain pack (see `packs list`)")
    p.add_argument("--template", metavar="ID", help="use a template of the pack")
    p.add_argument("--var", action="append", metavar="NAME=VALUE", help="a template variable")
    p.add_argument("--max-tokens", type=int, metavar="N")
    p.add_argument("--temperature", type=float, metavar="T")
    p.add_argument("--seed", type=int, metavar="N")
    p.add_argument("--stats", action="store_true", help="print generation statistics to stderr")
    p.add_argument("--save", action="store_true", help="save the exchange in the vault")
    p.add_argument(
        "--continue", dest="cont", metavar="ID", help="continue a saved conversation (saves)"
    )
    add_passphrase_fd(p)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("init", help="create the encrypted vault")
    p.add_argument("--passphrase-fd", type=int, metavar="FD")
    p.add_argument("--kdf-memory-mib", type=int, default=64, metavar="MIB", help="Argon2id memory")
    p.add_argument("--kdf-passes", type=int, default=4, metavar="N", help="Argon2id passes")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("passwd", help="change the vault passphrase")
    add_passphrase_fd(p)
    p.add_argument("--new-passphrase-fd", type=int, metavar="FD")
    p.set_defaults(func=cmd_passwd)

    p = sub.add_parser("history", help="list, show, search, delete, rename conversations")
    hsub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)
    h = hsub.add_parser("list", help="conversations, pinned first, newest first")
    h.add_argument("--json", action="store_true")
    add_passphrase_fd(h)
    h = hsub.add_parser("show", help="print a conversation")
    h.add_argument("id")
    h.add_argument("--json", action="store_true")
    add_passphrase_fd(h)
    h = hsub.add_parser("search", help="full-text search over every message and title")
    h.add_argument("query")
    h.add_argument("--conversation", metavar="ID")
    h.add_argument("--pack", metavar="ID")
    h.add_argument("--role", choices=["user", "assistant", "system"])
    h.add_argument("--since", type=_date, metavar="YYYY-MM-DD", help="messages from this day")
    h.add_argument("--until", type=_date, metavar="YYYY-MM-DD", help="messages before this day")
    h.add_argument("--json", action="store_true")
    add_passphrase_fd(h)
    h = hsub.add_parser("delete", help="delete a conversation for good")
    h.add_argument("id")
    add_passphrase_fd(h)
    h = hsub.add_parser("rename", help="rename a conversation")
    h.add_argument("id")
    h.add_argument("title")
    add_passphrase_fd(h)
    h = hsub.add_parser("pin", help="pin a conversation (--off to unpin)")
    h.add_argument("id")
    h.add_argument("--off", action="store_true")
    add_passphrase_fd(h)
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("keys", help="the vault's own age identity for exports")
    p.add_argument("action", choices=["new", "show"])
    p.add_argument("--force", action="store_true", help="replace an existing identity")
    add_passphrase_fd(p)
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("export", help="write conversations to an encrypted (age) file")
    p.add_argument("id", nargs="?", help="conversation id (or --all)")
    p.add_argument("out", help="the file to write")
    p.add_argument("--all", action="store_true", help="every conversation")
    add_encryption_args(p)
    p.add_argument("--format", choices=["md", "json"], default="md")
    p.add_argument(
        "--redact",
        action="store_true",
        help="replace e-mails, phone numbers, IDs, record numbers, birth dates",
    )
    p.add_argument("--yes", action="store_true", help="do not ask to confirm redactions")
    add_passphrase_fd(p)
    p.set_defaults(func=cmd_export)

    for name, helptext, func in (
        ("verify", "decrypt an export in memory and check its hash chain", cmd_verify),
        ("import", "add the conversations of an export as new ones", cmd_import),
        ("restore", "restore a backup into an empty vault", cmd_restore),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("file")
        add_decryption_args(p)
        add_passphrase_fd(p)
        p.set_defaults(func=func)

    cli_packs.add_parser(sub)

    p = sub.add_parser("doctor", help="check the vault, files, offline guard, models, disk")
    p.add_argument("--json", action="store_true")
    p.add_argument("--passphrase-fd", type=int, metavar="FD")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("backup", help="an encrypted backup of the whole vault")
    p.add_argument("out")
    add_encryption_args(p, recipients=False)
    add_passphrase_fd(p)
    p.set_defaults(func=cmd_backup)
    return parser


# Exceptions that are the user's to fix: one line, no traceback.
_USER_ERRORS: tuple[type[Exception], ...] = (
    NoModelError,
    EngineError,
    GGUFError,
    VaultError,
    UnlockError,
    StoreError,
    PassphraseError,
    ExportError,
    PackError,
    TemplateError,
    OSError,
)


def _no_app() -> int:
    raise UsageError("bastion: give a command (the chat app starts from the `bastion` script)")


def main(argv: Sequence[str] | None = None, run_app: Callable[[], int] = _no_app) -> int:
    """Run the CLI. ``run_app`` starts the terminal app when no command is given; it is
    passed in by tui.launch so that the core never imports the UI."""
    os.umask(0o077)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
        if func is None:
            return run_app()
        return func(args)
    except UsageError as exc:
        print(printable(str(exc)), file=sys.stderr)
        return EXIT_USAGE
    except _USER_ERRORS as exc:
        print(f"bastion: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("bastion: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = str(exc) or type(exc).__name__
    return printable(text.splitlines()[0]) if text.strip() else type(exc).__name__


def entry() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    entry()


__all__ = ["ModelInfo", "build_parser", "main"]
