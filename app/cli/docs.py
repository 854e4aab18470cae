"""``bastion docs``: add, list, show, search and remove the user's documents."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bastion.app.cli.common import (
    EXIT_ERROR,
    Parser,
    UsageError,
    add_passphrase_fd,
    confirm,
    open_vault,
    printable,
)
from bastion.app.documents import DocumentError, library
from bastion.storage.schema import DocumentRecord


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def _pages(doc: DocumentRecord) -> str:
    if not doc.paged:
        return "-"
    return str(doc.pages)


def cmd_add(args: argparse.Namespace) -> int:
    failed = 0
    with open_vault(args) as vault:
        store = vault.store
        conv = store.find_conversation(args.to) if args.to else None
        for name in args.files:
            path = Path(name)
            try:
                added = library.add_file(store, path, keep_original=args.keep_original)
            except DocumentError as exc:
                print(f"bastion: {printable(str(exc))}", file=sys.stderr)
                failed += 1
                continue
            doc = added.record
            if conv is not None:
                store.attach_document(conv.id, doc.id)
            print(doc.id)
            what = "added" if added.created else "already in the vault"
            pages = f"{doc.pages} pages" if doc.paged else "unpaged"
            extra = f", {doc.empty_pages} pages without text" if doc.empty_pages else ""
            print(
                f"bastion: {what}: {printable(doc.title)} ({doc.kind}, {pages}{extra})"
                + (f", attached to conversation {conv.id}" if conv else ""),
                file=sys.stderr,
            )
    return EXIT_ERROR if failed else 0


def cmd_list(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        docs = vault.store.list_documents()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": d.id,
                        "title": d.title,
                        "kind": d.kind,
                        "pages": d.pages,
                        "paged": d.paged,
                        "size": d.size,
                        "added": d.added.isoformat(),
                        "sha256": d.sha256,
                        "original_kept": d.has_original,
                    }
                    for d in docs
                ],
                ensure_ascii=False,
            )
        )
        return 0
    if not docs:
        print("no documents; add some with `bastion docs add FILE...`", file=sys.stderr)
        return 0
    rows = [("ID", "PAGES", "SIZE", "ADDED", "TITLE")]
    for d in docs:
        rows.append(
            (
                d.id[:12],
                _pages(d),
                _size(d.size),
                d.added.astimezone().strftime("%Y-%m-%d %H:%M"),
                printable(d.title),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        store = vault.store
        doc = store.find_document(args.id)
        first, last = (args.page, args.page) if args.page else (1, None)
        pages = store.document_pages(doc.id, first, last)
    if args.page and not pages:
        raise UsageError(f"bastion docs show: {doc.title} has no page {args.page}")
    if not args.page:
        print(f"id:       {doc.id}")
        print(f"title:    {printable(doc.title)}")
        print(f"format:   {doc.kind}")
        print(f"pages:    {doc.pages if doc.paged else 'unpaged'}")
        if doc.empty_pages:
            print(f"          {doc.empty_pages} without a text layer (scanned: not read)")
        print(f"size:     {_size(doc.size)}")
        print(f"sha256:   {doc.sha256}")
        print(f"added:    {doc.added.astimezone().isoformat(timespec='seconds')}")
        print(f"original: {'kept in the vault' if doc.has_original else 'not kept'}")
    for page in pages:
        if doc.paged:
            print(f"\n--- p. {page.page} ---")
        else:
            print()
        print(printable(page.text, keep_newlines=True))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        hits = vault.store.search_documents(args.query, limit=args.limit)
    if not hits:
        print("no matches", file=sys.stderr)
        return EXIT_ERROR
    for h in hits:
        where = f"{h.title} p. {h.page}" if h.paged else h.title
        print(f"{printable(where)}  ({h.document_id[:12]})")
        if h.heading:
            print(f"    § {printable(h.heading)}")
        print(f"    {printable(' '.join(h.snippet.split()))}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        store = vault.store
        doc = store.find_document(args.id)
        if not args.yes and not confirm(
            f"Remove {printable(doc.title)} from the vault (text, index and attachments)?"
        ):
            print("bastion: nothing removed", file=sys.stderr)
            return EXIT_ERROR
        store.remove_document(doc.id)
    print(f"bastion: removed document {doc.id}", file=sys.stderr)
    return 0


def add_parsers(sub: Any) -> None:
    """Register this family's commands."""
    docs = sub.add_parser("docs", help="your documents: add, list, show, search, remove")
    dsub = docs.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)

    p = dsub.add_parser("add", help="read files into the vault's library (prints their ids)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--to", metavar="CONVERSATION", help="also attach them to a conversation")
    p.add_argument(
        "--keep-original",
        action="store_true",
        help="also keep the file's bytes in the vault (backups then carry them)",
    )
    add_passphrase_fd(p)
    p.set_defaults(func=cmd_add)

    p = dsub.add_parser("list", help="the documents in the vault")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_passphrase_fd(p)
    p.set_defaults(func=cmd_list)

    p = dsub.add_parser("show", help="a document's details and text")
    p.add_argument("id", metavar="ID")
    p.add_argument("--page", type=int, metavar="N", help="only page N")
    add_passphrase_fd(p)
    p.set_defaults(func=cmd_show)

    p = dsub.add_parser("search", help="search every document (hits with title and page)")
    p.add_argument("query", metavar="QUERY")
    p.add_argument("--limit", type=int, default=20, metavar="N")
    add_passphrase_fd(p)
    p.set_defaults(func=cmd_search)

    p = dsub.add_parser("remove", help="delete a document from the vault")
    p.add_argument("id", metavar="ID")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_passphrase_fd(p)
    p.set_defaults(func=cmd_remove)
