"""One vault per client, and each vault's audit log: ``vaults list|new|remove``, ``audit``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from bastion.app import audit, paths
from bastion.app.cli import vault as vault_cli
from bastion.app.cli.common import (
    EXIT_ERROR,
    Parser,
    add_passphrase_fd,
    confirm,
    missing_vault,
    open_vault,
    printable,
)
from bastion.app.secrets_input import read_passphrase
from bastion.storage import crypto
from bastion.storage.vault import Vault


def cmd_vaults(args: argparse.Namespace) -> int:
    if args.action == "list":
        current = paths.vault_name()
        names = paths.vault_names()
        if args.json:
            print(
                json.dumps(
                    [
                        {"name": n, "folder": str(paths.vault_dir(n)), "current": n == current}
                        for n in names
                    ]
                )
            )
        else:
            for n in names:
                print(f"{'*' if n == current else ' '} {n}")
            if not names:
                print("bastion: no vault yet: create one with `bastion init`", file=sys.stderr)
        return 0
    name = paths.check_vault_name(args.name)
    if args.action == "new":
        args.command = "vaults new"
        return vault_cli.create_vault(args, name)
    # remove: the passphrase proves the right to delete, then the user confirms.
    folder = paths.vault_dir(name)
    if not paths.vault_exists(folder):
        raise missing_vault(folder)
    pw = read_passphrase(fd=args.passphrase_fd, prompt=f"Passphrase of vault {name}: ")
    try:
        vault = Vault.open(folder, pw, accept_rollback=True, verify=False)
    finally:
        crypto.wipe(pw)
    try:
        count = len(vault.store.list_conversations())
        sure = args.yes or confirm(
            f"Delete vault {name!r} and its {count} conversation(s), packs, settings and audit "
            "log for good?"
        )
    except BaseException:
        vault.close()
        raise
    if not sure:
        vault.close()
        print("bastion: nothing removed", file=sys.stderr)
        return EXIT_ERROR
    vault.destroy()
    print(f"bastion: vault {name} removed", file=sys.stderr)
    return 0


def _since(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _describe(data: dict[str, Any]) -> str:
    parts = []
    for key, value in data.items():
        shown = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        parts.append(f"{key}={shown}")
    return " ".join(parts)


def cmd_audit(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        if args.action == "verify":
            report = audit.verify(vault.store)
            if report.intact:
                print(f"audit log intact: {report.rows} event(s), every MAC matches")
                return 0
            print(
                f"bastion: audit log altered at row {report.first_bad}: {report.reason} "
                "(changed, inserted or removed by someone without the key)",
                file=sys.stderr,
            )
            return EXIT_ERROR
        events = audit.events(vault.store, args.since)
    if args.json:
        print(json.dumps([e.model_dump(mode="json") for e in events]))
    else:
        for e in events:
            line = f"{e.id:6}  {e.at:%Y-%m-%d %H:%M:%S}  {e.event:20} {_describe(e.data)}"
            print(printable(line.rstrip()))
    return 0


def add_parsers(sub: Any) -> None:
    """Register this family's commands."""
    p = sub.add_parser("vaults", help="list, create or remove vaults (one per client)")
    vsub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)
    v = vsub.add_parser("list", help="the vaults on this machine (* marks the chosen one)")
    v.add_argument("--json", action="store_true")
    v = vsub.add_parser("new", help="create a vault (prints its recovery key once)")
    v.add_argument("name")
    vault_cli.add_create_args(v)
    v = vsub.add_parser("remove", help="delete a vault for good (asks; needs its passphrase)")
    v.add_argument("name")
    v.add_argument("--yes", action="store_true", help="do not ask to confirm")
    v.add_argument("--passphrase-fd", type=int, metavar="FD")
    p.set_defaults(func=cmd_vaults)

    p = sub.add_parser("audit", help="the vault's audit log; `audit verify` checks its chain")
    p.add_argument("action", nargs="?", choices=["verify"], help="check every row's MAC")
    p.add_argument("--json", action="store_true")
    p.add_argument("--since", type=_since, metavar="YYYY-MM-DD", help="events from this day")
    add_passphrase_fd(p)
    p.set_defaults(func=cmd_audit)
