"""``bastion history``: list, show, search, delete, rename, pin conversations."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from bastion.app import audit
from bastion.app.cli.common import (
    Parser,
    add_passphrase_fd,
    open_vault,
    printable,
)


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
                    mark = "  [imported]" if c.imported else ""
                    print(
                        f"{c.id[:12]} {pin} {c.updated:%Y-%m-%d %H:%M}  {printable(c.title)}{mark}"
                    )
        elif args.action == "show":
            conv = store.find_conversation(args.id)
            msgs = store.thread(conv.id)
            if args.json:
                print(
                    json.dumps(
                        {
                            "conversation": conv.model_dump(mode="json"),
                            "messages": [m.model_dump(mode="json", by_alias=True) for m in msgs],
                        }
                    )
                )
            else:
                print(f"# {printable(conv.title)}\n")
                if conv.imported:
                    print("(imported from an export file, not written in this vault)\n")
                for m in msgs:
                    body = printable(m.content, keep_newlines=True)
                    print(f"## {printable(m.role)} ({m.created:%Y-%m-%d %H:%M})\n\n{body}\n")
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
                    print(f"{h.conversation_id}  {printable(where):9}  {printable(h.snippet)}")
        elif args.action == "delete":
            conv = store.find_conversation(args.id)
            store.delete_conversation(conv.id)
            audit.record(store, "conversation.delete", conversation=conv.id)
            print(f"bastion: deleted conversation {conv.id}", file=sys.stderr)
        elif args.action == "rename":
            conv = store.find_conversation(args.id)
            store.rename_conversation(conv.id, args.title)
        elif args.action == "pin":
            conv = store.find_conversation(args.id)
            store.set_pinned(conv.id, not args.off)
    return 0


def _date(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None


def add_parsers(sub: Any) -> None:
    """Register this family's commands."""
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
