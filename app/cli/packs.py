"""``bastion packs``: list, show, check, import, export, remove, validate, keygen, sign,
trust."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Literal

from bastion.app import pack_library, packs, paths
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
)
from bastion.app.packs import Pack, PackError
from bastion.storage import export as export_fmt
from bastion.storage.files import atomic_write


def _summary(pack: Pack) -> dict[str, Any]:
    return {
        "id": pack.id,
        "name": pack.name,
        "version": pack.version,
        "description": pack.description,
        "author": pack.author,
        "license": pack.license,
        "language": pack.language,
        "min_context": pack.min_context,
        "disclaimer": pack.disclaimer,
        "examples": len(pack.examples),
        "templates": [
            {"id": t.id, "title": t.title, "variables": [v.name for v in t.variables]}
            for t in pack.templates
        ],
        "safety": [
            {"id": r.id, "stage": r.stage, "action": r.action, "description": r.description}
            for r in pack.safety
        ],
        "references": [{"id": r.id, "title": r.title, "source": r.source} for r in pack.references],
        "eval_questions": len(pack.eval),
    }


def cmd_list(args: argparse.Namespace) -> int:
    if not paths.vault_exists():
        rows = [
            (p.id, p.version, "built-in", p.name) for p in map(packs.builtin, packs.builtin_ids())
        ]
        print(
            "bastion: no vault yet; built-in packs shown (imports need `bastion init`)",
            file=sys.stderr,
        )
    else:
        with open_vault(args) as vault:
            pack_library.install_builtins(vault.store)
            rows = [
                (i.pack.id, i.pack.version, i.trust_text, i.pack.name)
                for i in pack_library.installed(vault.store)
            ]
    if args.json:
        print(
            json.dumps(
                [dict(zip(("id", "version", "trust", "name"), r, strict=True)) for r in rows]
            )
        )
        return 0
    table = [("ID", "VERSION", "TRUST", "NAME"), *[tuple(map(printable, r)) for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[3])
    return 0


def _installed(args: argparse.Namespace, pack_id: str) -> tuple[Pack, str]:
    if not paths.vault_exists():
        return packs.builtin(pack_id), "built-in"
    with open_vault(args) as vault:
        pack_library.install_builtins(vault.store)
        found = pack_library.get(vault.store, pack_id)
        return found.pack, found.trust_text


def cmd_show(args: argparse.Namespace) -> int:
    pack, trust = _installed(args, args.id)
    info = {**_summary(pack), "trust": trust}
    if args.json:
        print(json.dumps(info, ensure_ascii=False))
        return 0
    p = printable
    print(f"{p(pack.name)} ({p(pack.id)} {p(pack.version)}), {p(trust)}")
    print(f"  {p(pack.description)}")
    print(
        f"  author: {p(pack.author)}; license: {p(pack.license)}; language: {p(pack.language)}; "
        f"minimum context: {pack.min_context} tokens"
    )
    print(f"  disclaimer: {p(pack.disclaimer)}")
    print(f"  examples: {len(pack.examples)}; eval questions: {len(pack.eval)}")
    print(f"  templates ({len(pack.templates)}):")
    for t in pack.templates:
        names = ", ".join(v.name for v in t.variables)
        print(f"    /{p(t.id)}  {p(t.title)}  [{p(names)}]")
    print(f"  safety rules ({len(pack.safety)}):")
    for r in pack.safety:
        print(f"    {p(r.id)}  ({p(r.stage)}, {p(r.action)})  {p(r.description)}")
    print(f"  references ({len(pack.references)}):")
    for ref in pack.references:
        print(f"    {p(ref.title)}  ({p(ref.source)})")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        pack = packs.load(Path(args.file))
        _, signer = packs.verify(pack, {})
    except PackError as exc:
        for problem in exc.problems:
            print(f"bastion: {printable(problem)}", file=sys.stderr)
        return EXIT_ERROR
    signed = (
        f"signed by {printable(signer)} (key not checked against your trusted keys)"
        if (pack.signature)
        else "unsigned"
    )
    print(
        f"{printable(pack.id)} {printable(pack.version)}: valid; {len(pack.templates)} templates, "
        f"{len(pack.safety)} safety rules (examples hold), {len(pack.references)} references, "
        f"{len(pack.eval)} eval questions; {signed}"
    )
    return 0


def _fired(pack: Pack, text: str, stage: str) -> list[dict[str, Any]]:
    st: Literal["input", "output"] = "output" if stage == "output" else "input"
    out: list[dict[str, Any]] = [
        {
            "id": h.rule.id,
            "action": h.action,
            "tier": "uncertain" if h.tier == "partial" else "full",
            "concepts": h.concepts,
        }
        for h in pack.evaluate(text, st)
    ]
    if st == "output":
        for f in pack.check_doses(text):
            out.append(
                {
                    "id": f"dose-check:{f.limit.id}",
                    "action": "caution",
                    "tier": "full",
                    "concepts": [],
                    "stated_mg": f.stated_mg,
                    "maximum_mg": f.maximum_mg,
                }
            )
    return out


def cmd_check(args: argparse.Namespace) -> int:
    pack, _ = _installed(args, args.id)
    if args.text == "-":
        messages = [line for line in sys.stdin.read().splitlines() if line.strip()]
    else:
        messages = [args.text]
    if not messages or not any(m.strip() for m in messages):
        raise UsageError("bastion packs check: the text is empty")
    for n, text in enumerate(messages, 1):
        fired = _fired(pack, text, args.stage)
        if args.json:
            print(json.dumps({"fired": fired}))
            continue
        where = f"{n}: " if len(messages) > 1 else ""
        if not fired:
            print(f"{where}no rule fires")
        for f in fired:
            tier = " (uncertain tier)" if f["tier"] == "uncertain" else ""
            concepts = ", ".join(f["concepts"]) or "-"
            print(f"{where}{f['action']:8} {f['id']}{tier}  concepts: {concepts}")
    return 0


def _load_for_import(args: argparse.Namespace, vault: Any) -> Pack:
    path = Path(args.file)
    if path.is_file():
        with path.open("rb") as fh:
            head = fh.read(64)
        if head.startswith(b"age-encryption.org/"):
            data, header = read_export(args)
            plain = decrypt_file(args, vault, data, header)
            try:
                text = plain.decode("utf-8")
            except UnicodeDecodeError:
                raise PackError([f"{path.name}: the decrypted pack is not UTF-8 text"]) from None
            return packs.parse(text, name=path.name)
    return packs.load(path)


def cmd_import(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        pack_library.install_builtins(vault.store)
        pack = _load_for_import(args, vault)
        plan = pack_library.plan_import(vault.store, pack)
        print(f"bastion: {printable(plan.describe())}", file=sys.stderr)
        question = (
            "Replace the built-in pack with this one?"
            if plan.replaces_builtin
            else "Replace the installed pack?"
        )
        if plan.needs_confirmation and not args.yes and not confirm(question):
            print("bastion: import cancelled; nothing changed", file=sys.stderr)
            return EXIT_ERROR
        pack_library.apply_import(vault.store, plan)
    print(f"bastion: imported pack {printable(pack.id)} {printable(pack.version)}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.plain and (args.passphrase or args.recipient):
        raise UsageError(
            "bastion packs export: --plain writes an unencrypted file; "
            "do not combine it with --passphrase or --recipient"
        )
    recipients = [export_fmt.parse_recipient(r) for r in args.recipient or []]
    with open_vault(args) as vault:
        pack_library.install_builtins(vault.store)
        text = pack_library.get(vault.store, args.id).pack.to_toml()
        if args.plain:
            atomic_write(Path(args.out), text.encode())
        else:
            recipients, passphrase = encryption(args, vault, recipients)
            blob = export_fmt.encrypt(text.encode(), recipients=recipients, passphrase=passphrase)
            export_fmt.write_encrypted(Path(args.out), blob)
    kind = "unencrypted TOML" if args.plain else "age-encrypted TOML"
    print(
        f"bastion: wrote pack {printable(args.id)} to {printable(args.out)} ({kind})",
        file=sys.stderr,
    )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        vault.store.get_pack(args.id)
        if not args.yes and not confirm(f"Remove pack {args.id} from the vault?"):
            print("bastion: nothing removed", file=sys.stderr)
            return EXIT_ERROR
        pack_library.remove(vault.store, args.id)
    print(f"bastion: removed pack {printable(args.id)}", file=sys.stderr)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise UsageError(f"bastion packs keygen: {out} exists (--force replaces it)")
    pem, public = packs.new_signing_key()
    atomic_write(out, pem, mode=0o600)
    print(public)
    print(
        f"bastion: private key written to {out} (mode 0600); share only the public key above",
        file=sys.stderr,
    )
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    target = Path(args.file)
    toml_path = target / "pack.toml" if target.is_dir() else target
    pack = packs.load(target)
    key = packs.load_signing_key(Path(args.key).read_bytes())
    signature = packs.signature_for(pack, key, args.signer)
    text = packs.signed_toml(toml_path.read_text(encoding="utf-8"), signature)
    # Check before replacing the file: the new text must load and verify.
    checked = packs.parse(text, name=toml_path.name, folder=target if target.is_dir() else None)
    packs.verify(checked, {})
    atomic_write(toml_path, text.encode(), mode=toml_path.stat().st_mode & 0o777)
    print(
        f"bastion: signed {printable(pack.id)} {printable(pack.version)} as "
        f"{printable(args.signer)} ({signature.public_key})",
        file=sys.stderr,
    )
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        if args.list:
            for key, name in pack_library.trusted_keys(vault.store).items():
                print(f"{printable(key)}  {printable(name)}")
            return 0
        if not args.key:
            raise UsageError("bastion packs trust: give a public key (ed25519:...) or --list")
        if args.remove:
            pack_library.untrust_key(vault.store, args.key)
            print("bastion: key no longer trusted", file=sys.stderr)
            return 0
        if not args.name:
            raise UsageError("bastion packs trust: give --name for the key's owner")
        pack_library.trust_key(vault.store, args.key, args.name)
    print(
        f"bastion: packs signed by this key now show as verified by {printable(args.name)}",
        file=sys.stderr,
    )
    return 0


def add_parsers(sub: Any) -> None:
    """Register ``packs`` and its actions on the main parser's subparsers."""
    p = sub.add_parser("packs", help="domain packs: list, show, import, export, sign, trust")
    psub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))

    a = psub.add_parser("list", help="installed packs and how far each is trusted")
    a.add_argument("--json", action="store_true")
    add_passphrase_fd(a)
    a.set_defaults(func=cmd_list)

    a = psub.add_parser("show", help="a pack's details: templates, safety rules, references")
    a.add_argument("id")
    a.add_argument("--json", action="store_true")
    add_passphrase_fd(a)
    a.set_defaults(func=cmd_show)

    a = psub.add_parser("validate", help="check a pack file or folder; lists every problem")
    a.add_argument("file")
    a.set_defaults(func=cmd_validate)

    a = psub.add_parser("check", help="which safety rules fire on a message (no model is loaded)")
    a.add_argument("id")
    a.add_argument("text", metavar="TEXT", help="the message, or - for one message per line")
    a.add_argument("--json", action="store_true", help='print {"fired": [...]} per message')
    a.add_argument(
        "--stage",
        choices=["input", "output"],
        default="input",
        help="check as a question (input, default) or as an answer (output: with dose checks)",
    )
    add_passphrase_fd(a)
    a.set_defaults(func=cmd_check)

    a = psub.add_parser("import", help="install a pack (TOML file, folder, or .age export)")
    a.add_argument("file")
    a.add_argument(
        "--yes",
        action="store_true",
        help="replace an equal or newer version, or a built-in (needs a trusted signature)",
    )
    add_decryption_args(a, max_size=packs.MAX_PACK_BYTES * 4)
    add_passphrase_fd(a)
    a.set_defaults(func=cmd_import)

    a = psub.add_parser("export", help="write a pack to a file (age-encrypted unless --plain)")
    a.add_argument("id")
    a.add_argument("out")
    a.add_argument("--plain", action="store_true", help="unencrypted TOML, e.g. to publish")
    add_encryption_args(a)
    add_passphrase_fd(a)
    a.set_defaults(func=cmd_export)

    a = psub.add_parser("remove", help="delete a pack and its reference index from the vault")
    a.add_argument("id")
    a.add_argument("--yes", action="store_true")
    add_passphrase_fd(a)
    a.set_defaults(func=cmd_remove)

    a = psub.add_parser("keygen", help="make an Ed25519 key pair for signing packs")
    a.add_argument("--out", required=True, metavar="FILE", help="private key file (mode 0600)")
    a.add_argument("--force", action="store_true")
    a.set_defaults(func=cmd_keygen)

    a = psub.add_parser("sign", help="sign a pack file or folder in place")
    a.add_argument("file")
    a.add_argument("--key", required=True, metavar="FILE", help="private key from keygen")
    a.add_argument("--signer", required=True, metavar="NAME", help="your name or organisation")
    a.set_defaults(func=cmd_sign)

    a = psub.add_parser("trust", help="trust a public key for pack signatures")
    a.add_argument("key", nargs="?", help="ed25519:... public key")
    a.add_argument("--name", help="whose key it is (shown as 'verified: signed by NAME')")
    a.add_argument("--list", action="store_true", help="list trusted keys")
    a.add_argument("--remove", action="store_true", help="stop trusting the key")
    add_passphrase_fd(a)
    a.set_defaults(func=cmd_trust)
