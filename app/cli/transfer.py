"""Moving data in and out: ``keys``, ``export``, ``verify``, ``import``, ``backup``, ``restore``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bastion.app import audit, paths, transfer
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

EXIT_NOT_AUTHENTIC = 3


def cmd_keys(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        store = vault.store
        if args.action in ("trust", "untrust"):
            return _trust(args, store)
        existing = transfer.vault_identity(store)
        if args.action == "new":
            if existing is not None and not args.force:
                raise ExportError(
                    "the vault already has an age identity (--force makes a new one; the old "
                    "one is kept to open earlier files)"
                )
            identity = transfer.new_identity(store)
            audit.record(
                store,
                "keys.new",
                recipient=audit.fingerprint(export_fmt.public_key(identity)),
                replaced=existing is not None,
            )
        elif args.action == "list":
            for fp, name in sorted(transfer.trusted_export_keys(store).items()):
                print(f"{fp}  {printable(name)}")
            return 0
        else:
            identity = existing
            if identity is None:
                raise ExportError("the vault has no age identity yet: run `bastion keys new`")
        signing = transfer.signing_identity(store)
        print(export_fmt.public_key(identity))
        print(f"{signing.public_key}  signing key, fingerprint {signing.fingerprint}")
    return 0


def _trust(args: argparse.Namespace, store: Any) -> int:
    if not args.key:
        raise UsageError(
            f"bastion keys {args.action}: give a signing key (ed25519:...) or fingerprint"
        )
    if args.action == "untrust":
        fp = transfer.untrust_export_key(store, args.key)
        print(f"bastion: exports signed by {fp} are no longer trusted", file=sys.stderr)
        return 0
    if not args.name:
        raise UsageError("bastion keys trust: give --name for the key's owner")
    fp = transfer.trust_export_key(store, args.key, args.name)
    print(
        f"bastion: exports signed by {fp} now verify as authentic, from {printable(args.name)}",
        file=sys.stderr,
    )
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
    print(f"bastion: exported {n} conversation(s) to {printable(out)}", file=sys.stderr)
    return 0


def _exit_for(result: transfer.Verification) -> int:
    status = result.status
    if status is transfer.Authenticity.AUTHENTIC:
        return 0
    if status is transfer.Authenticity.ALTERED:
        return EXIT_ERROR
    return EXIT_NOT_AUTHENTIC


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0: authentic (intact, signed by this vault or a trusted key); 3: intact but
    unsigned or signed by an unknown key; 1: altered."""
    data, header = read_export(args)
    if paths.vault_exists():  # whose keys count as authentic: the vault's
        with open_vault(args) as vault:
            plaintext = decrypt_file(args, vault, data, header)
            result = transfer.verify(plaintext, vault.store)
    else:
        plaintext = decrypt_file(args, None, data, header)
        result = transfer.verify(plaintext)
    doc = result.document
    p = printable
    print(f"{p(doc['format'])} v{doc['version']}, exported {p(doc.get('exported') or '?')}")
    for conv, report in zip(doc.get("conversations", []), result.reports, strict=True):
        model = (conv.get("model") or {}).get("name") or "unknown model"
        status = "intact" if report.intact else "ALTERED"
        mark = " [imported]" if conv.get("imported") is True else ""
        title = p(repr(conv.get("title")))
        line = f"- {title}{mark}: {report.messages} messages, {p(model)}, {status}"
        if not report.intact:
            if report.altered_id:
                line += f" at message {(report.first_altered or 0) + 1} (id {p(report.altered_id)})"
            else:
                line += " (the chain head does not match)"
        print(line)
    print(p(result.describe()))
    code = _exit_for(result)
    if code == EXIT_ERROR:
        print("bastion: the export was altered after it was made", file=sys.stderr)
    elif code == EXIT_NOT_AUTHENTIC:
        print("bastion: the export is intact but not authenticated", file=sys.stderr)
    return code


def cmd_import(args: argparse.Namespace) -> int:
    data, header = read_export(args)
    with open_vault(args) as vault:
        result = transfer.import_verified(vault.store, decrypt_file(args, vault, data, header))
        transfer.record_import(
            vault.store, "import", data, result.ids, header, result.verification.describe()
        )
    print(
        f"bastion: imported {len(result.ids)} conversation(s), marked imported; the file is "
        f"{printable(result.verification.describe())}",
        file=sys.stderr,
    )
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        recipients, passphrase = encryption(args, vault, [])
        doc = transfer.build_backup(vault.store)
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
        n = transfer.restore_backup(vault.store, doc.raw, _confirm_keys(args))
        ids = [c.id for c in vault.store.list_conversations()]
        transfer.record_import(vault.store, "restore", data, ids, header)
    print(f"bastion: restored {n} conversation(s)", file=sys.stderr)
    return 0


def add_parsers(sub: Any) -> None:
    """Register this family's commands."""
    p = sub.add_parser(
        "keys", help="the vault's age identity (encryption) and signing key (authenticity)"
    )
    p.add_argument(
        "action",
        choices=["show", "new", "trust", "untrust", "list"],
        help="show: both public keys; new: a new age identity (the old one still decrypts); "
        "trust/untrust KEY: another vault's signing key for `verify`; list: trusted keys",
    )
    p.add_argument("key", nargs="?", help="for trust/untrust: ed25519:... key or fingerprint")
    p.add_argument("--name", help="for trust: whose key it is")
    p.add_argument("--force", action="store_true", help="make a new identity even if one exists")
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
