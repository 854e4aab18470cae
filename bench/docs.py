"""Documents: ingest speed, library search speed, and time to first token of a grounded answer.

1. Ingest: real PDFs from Debian's documentation packages (pdfTeX, dvipdfmx, groff +
   Ghostscript, Apache FOP) added to an encrypted vault: extraction in the sandboxed child,
   chunking, storing and indexing. Text pages per second (goal: >= 20).
2. ``docs search`` over a library of N pages (default 10,000: the real pages repeated as
   distinct documents) in an encrypted vault: median of several queries (goal: < 200 ms).
   Beside it, the same queries on a library a tenth that size.
3. Time to first token of an answer grounded on 3 passages, on the embedded model: the
   passages found and evaluated while the user typed (``ChatSession.prefetch``) versus found
   and evaluated at send time (goal with prefetch: <= 1.5 s).

Prints tables, then, as the last line, one JSON object.

    .venv/bin/python bench/docs.py [--pages 10000] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

from bastion.app.documents import library, sandbox
from bastion.app.documents.chunking import chunk_pages, page_texts
from bastion.app.session import ChatSession
from bastion.models import compute
from bastion.models.discovery import embedded_model_path
from bastion.models.engine import Engine
from bastion.storage.crypto import KdfParams
from bastion.storage.store import Store
from bastion.storage.vault import Vault

PDFS = [
    Path("/usr/share/doc/bash/bashref.pdf"),
    Path("/usr/share/doc/glpk-doc/gmpl.pdf"),
    Path("/usr/share/doc/bash/bash.pdf"),
    Path("/usr/share/doc/xorg-docs/README.pdf.gz"),
]
QUERIES = [
    "unsubscripted set",
    "parameter statement",
    "shell variables",
    "here documents",
    "mailing lists",
    "arithmetic expansion",
    "objective function",
    "pipeline exit status",
]
DRAFTS = [
    ("How are parameter statements writ", "How are parameter statements written?"),
    ("What does the set statement decla", "What does the set statement declare?"),
    ("How does arithmetic expansion wo", "How does arithmetic expansion work?"),
]
FAST_KDF = KdfParams(memory_kib=8 * 1024, passes=1, lanes=1)


def read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def ingest(store: Store) -> tuple[int, float]:
    """Add every PDF; returns (text pages, seconds)."""
    pages = 0
    start = time.perf_counter()
    for path in PDFS:
        added = library.add_bytes(store, path.name.removesuffix(".gz"), read(path))
        pages += added.record.pages - added.record.empty_pages
    return pages, time.perf_counter() - start


def fill(store: Store, target: int) -> int:
    """A library of about ``target`` pages: the real PDFs' pages as distinct documents."""
    parsed = [sandbox.extract("pdf", read(p)) for p in PDFS]
    total = 0
    copy = 0
    while total < target:
        for path, doc in zip(PDFS, parsed, strict=True):
            if total >= target:
                break
            copy += 1
            chunks = chunk_pages(doc.pages)
            store.add_document(
                sha256=hashlib.sha256(f"{path.name}:{copy}".encode()).hexdigest(),
                title=f"{copy:04d}-{path.name.removesuffix('.gz')}",
                kind="pdf",
                paged=True,
                pages=page_texts(doc.pages),
                chunks=[(c.page, c.heading, c.text) for c in chunks],
                size=0,
            )
            total += len(doc.pages)
    return total


def search_ms(store: Store, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        for q in QUERIES:
            t0 = time.perf_counter()
            store.search_documents(q)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def ttft(session: ChatSession, draft: str, final: str, prefetch: bool) -> tuple[float, int]:
    session.new_conversation(incognito=True)
    docs = session.library()
    session.attach_record(next(d for d in docs if d.title == "gmpl.pdf"))
    assert session.engine is not None
    session.engine.clear_cache()
    if prefetch:
        session.prefetch(draft)
        session.prefetch(final)  # typing paused again on the last words
    t0 = time.perf_counter()
    pending = session.send(final)
    gen = session.generate(pending)
    next(iter(gen), None)
    elapsed = time.perf_counter() - t0
    pending.cancel.set()
    for _ in gen:
        pass
    return elapsed, len(pending.sources)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1,000 pages, 1 round")
    args = ap.parse_args()
    if args.quick:
        args.pages, args.rounds = 1_000, 1
    result: dict[str, float | int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        vault = Vault.create(Path(tmp) / "v", bytearray(b"bench"), FAST_KDF)
        store = vault.store
        pages, seconds = ingest(store)
        rate = pages / seconds
        print(f"ingest: {pages} text pages in {seconds:.2f} s -> {rate:.1f} pages/s (goal 20)")
        result.update(
            ingest_pages=pages, ingest_s=round(seconds, 3), ingest_pages_per_s=round(rate, 1)
        )
        result["ingest_vs_goal"] = round(rate / 20, 2)

        small_vault = Vault.create(Path(tmp) / "s", bytearray(b"bench"), FAST_KDF)
        small_pages = fill(small_vault.store, max(args.pages // 10, 400))
        big_pages = fill(store, args.pages)
        small = search_ms(small_vault.store, args.rounds)
        big = search_ms(store, args.rounds)
        small_vault.close()
        print(
            f"docs search: {big_pages} pages {big:.1f} ms, {small_pages} pages {small:.1f} ms "
            f"(median of {len(QUERIES) * args.rounds}) -> {big / max(small, 1e-6):.1f}x; "
            "goal < 200 ms"
        )
        result.update(
            search_pages=big_pages,
            search_ms=round(big, 1),
            search_small_pages=small_pages,
            search_small_ms=round(small, 1),
            search_vs_goal=round(big / 200, 3),
        )

        model = embedded_model_path()
        if model is None:
            raise SystemExit("the embedded model is not installed: run `make dev`")
        session = ChatSession.over(vault)
        session.engine = Engine(model)
        session.settings.sampling.max_tokens = 4
        session.settings.sampling.temperature = 0.0
        typed, cold, counts = [], [], []
        for _ in range(args.rounds):
            for draft, final in DRAFTS:
                t, n = ttft(session, draft, final, prefetch=True)
                typed.append(t)
                counts.append(n)
                cold.append(ttft(session, draft, final, prefetch=False)[0])
        ty, co = statistics.median(typed), statistics.median(cold)
        print(
            f"time to first token, grounded on {statistics.median(counts):.0f} passages: "
            f"prepared while typing {ty:.2f} s, at send {co:.2f} s -> {co / ty:.1f}x; "
            "goal <= 1.5 s"
        )
        result.update(
            ttft_prepared_s=round(ty, 3),
            ttft_at_send_s=round(co, 3),
            ttft_speedup=round(co / ty, 2),
            ttft_passages=statistics.median(counts),
            ttft_vs_goal=round(ty / 1.5, 3),
        )
        session.engine.close()
        vault.close()
    print(json.dumps(result))


if __name__ == "__main__":
    # All of it on the thread that runs llama.cpp (bastion.models.compute): answers are
    # then computed inline, as in the app, not handed over token by token.
    compute.run(main)
