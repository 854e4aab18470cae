"""Moving data in and out: ``keys``, ``export``, ``verify``, ``import``, ``backup``, ``restore``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bastion.app import audit, transfer
from bastion.app.cli.common import (
    EXIT_ERROR,
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
    recipient_texts,
)
from bastion.storage import export as export_fmt
from bastion.storage.export import ExportError


def cmd_keys(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        existing = transfer.vault_identity(vault.store)
        if args.action == "new":
            if existing is not None and not args.force:
                raise ExportError("the vault already has an age identity (--force replaces it)")
            vault.store.set_setting(transfer.IDENTITY_KEY, None)
            identity = transfer.ensure_identity(vault.store)
            audit.record(
                vault.store,
                "keys.new",
                recipient=audit.fingerprint(export_fmt.public_key(identity)),
                replaced=existing is not None,
            )
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
        transfer.record_export(
            vault.store,
            "export",
            [c["id"] for c in doc["conversations"]],
            recipient_texts(args, vault, passphrase),
            passphrase=passphrase is not None,
            form=args.format,
            redacted=redaction is not None,
        )
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
        transfer.record_import(vault.store, "import", data, ids, header)
    print(f"bastion: imported {len(ids)} conversation(s)", file=sys.stderr)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        doc = transfer.build_backup(vault.store)
        recipients, passphrase = encryption(args, vault, [])
        plaintext = transfer.render(doc, "json")
        export_fmt.write_encrypted(
            Path(args.out),
            export_fmt.encrypt(plaintext, recipients=recipients, passphrase=passphrase),
        )
        transfer.record_export(
            vault.store,
            "backup",
            [c["id"] for c in doc["conversations"]],
            recipient_texts(args, vault, passphrase),
            passphrase=passphrase is not None,
        )
    print(f"bastion: backed up {len(doc['conversations'])} conversation(s)", file=sys.stderr)
    return 0


def _confirm_keys(args: argparse.Namespace) -> Any:
    def ask(keys: dict[str, str]) -> bool:
        print("bastion: the backup trusts these pack-signing keys:", file=sys.stderr)
        for key, name in keys.items():
            print(f"  {key}  {printable(name)}", file=sys.stderr)
        if getattr(args, "yes", False):
            return True
        if confirm("Trust these keys in this vault too?"):
            return True
        print("bastion: keys not trusted; packs they sign restore as unverified", file=sys.stderr)
        return False

    return ask


def cmd_restore(args: argparse.Namespace) -> int:
    data, header = read_export(args)
    with open_vault(args) as vault:
        doc = export_fmt.parse_document(decrypt_file(args, vault, data, header))
        n = transfer.restore_backup(vault.store, doc, _confirm_keys(args))
        ids = [c.id for c in vault.store.list_conversations()]
        transfer.record_import(vault.store, "restore", data, ids, header)
    print(f"bastion: restored {n} conversation(s)", file=sys.stderr)
    return 0


def add_parsers(sub: Any) -> None:
    """Register this family's commands."""
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
        if name == "restore":
            p.add_argument(
                "--yes", action="store_true", help="trust the backup's pack-signing keys"
            )
        add_decryption_args(p)
        add_passphrase_fd(p)
        p.set_defaults(func=func)

    p = sub.add_parser("backup", help="an encrypted backup of the whole vault")
    p.add_argument("out")
    add_encryption_args(p, recipients=False)
    add_passphrase_fd(p)
    p.set_defaults(func=cmd_backup)
