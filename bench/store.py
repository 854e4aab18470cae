"""The encrypted vault against the same store on unencrypted SQLite, in one run.

Both sides run Bastion's own Store (same schema, FTS5 triggers, WAL, synchronous=FULL,
secure_delete); one on a SQLCipher vault, the other on a plain connection of the same SQLite
build (sqlcipher3 with no key). Measures:
  - insert: 10,000 messages, each in its own transaction (as the chat saves them);
  - load: the thread of a 1,000-message conversation;
  - search: ranked FTS5 queries over 100,000 messages.
Prints a table, then, as the last line, one JSON object.

    .venv/bin/python bench/store.py [--messages 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlcipher3

from bastion.storage.crypto import KdfParams
from bastion.storage.store import Store
from bastion.storage.vault import REQUIRED_PRAGMAS, Vault

WORDS = [
    "patient",
    "dose",
    "kidney",
    "blood",
    "pressure",
    "contract",
    "lease",
    "tenant",
    "employer",
    "notice",
    "clause",
    "symptom",
    "fever",
    "infection",
    "antibiotic",
    "allergy",
    "heart",
    "lung",
    "liver",
    "court",
    "appeal",
    "evidence",
    "witness",
    "privacy",
    "data",
    "consent",
    "record",
    "invoice",
    "payment",
    "deadline",
    "meeting",
    "review",
    "draft",
    "river",
    "mountain",
    "garden",
    "kitchen",
    "window",
    "letter",
    "summary",
    "question",
    "answer",
    "reason",
    "result",
]


def sentence(rng: random.Random) -> str:
    extra = [f"w{rng.randrange(5000)}" for _ in range(rng.randrange(5, 20))]
    words = [rng.choice(WORDS) for _ in range(rng.randrange(15, 60))] + extra
    rng.shuffle(words)
    return " ".join(words).capitalize() + "."


def plain_store(path: Path) -> Store:
    # The same connection settings as the vault's (see storage.vault._connect).
    conn = sqlcipher3.connect(
        str(path), check_same_thread=False, isolation_level=None, cached_statements=8
    )
    for name, value in REQUIRED_PRAGMAS.items():
        conn.execute(f"PRAGMA {name} = {value}").fetchall()
    return Store(conn)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_side(store: Store, n_insert: int, n_search: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    conv = store.create_conversation("inserts")
    texts = [sentence(rng) for _ in range(n_insert)]
    t = time.perf_counter()
    for i, text in enumerate(texts):
        store.add_message(conv.id, "user" if i % 2 == 0 else "assistant", text)
    insert_s = time.perf_counter() - t

    big = store.create_conversation("thousand")
    store.add_messages(big.id, [("user", sentence(rng), None) for _ in range(1000)])
    loads = [timed(lambda: store.thread(big.id)) for _ in range(7)]

    remaining = n_search - n_insert - 1000
    while remaining > 0:
        c = store.create_conversation(f"bulk {remaining}")
        batch = min(5000, remaining)
        store.add_messages(c.id, [("user", sentence(rng), None) for _ in range(batch)])
        remaining -= batch
    store.purge()
    queries = [
        "kidney dose",
        "lease notice",
        "w123",
        "fever antibiotic",
        "privacy consent",
        "court appeal evidence",
        "garden",
        "w4999 river",
        "invoice deadline",
        "blood",
    ]
    store.search("warm up")
    searches = [timed(lambda q=q: store.search(q, limit=50)) for q in queries for _ in range(3)]
    return {
        "insert_s": insert_s,
        "load_ms": statistics.median(loads) * 1000,
        "search_ms": statistics.median(searches) * 1000,
        "search_max_ms": max(searches) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inserts", type=int, default=10_000)
    ap.add_argument("--messages", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        vault = Vault.create(Path(tmp) / "vault", "bench", KdfParams(8 * 1024, 1))
        plain = plain_store(Path(tmp) / "plain.db")
        enc = run_side(vault.store, args.inserts, args.messages, seed=1)
        pla = run_side(plain, args.inserts, args.messages, seed=1)
        db_mb = (Path(tmp) / "vault" / "vault.db").stat().st_size / 1e6
        vault.close()
        plain.conn.close()
    result = {
        "inserts": args.inserts,
        "messages": args.messages,
        "vault_mb": round(db_mb, 1),
        "insert_s": round(enc["insert_s"], 2),
        "plain_insert_s": round(pla["insert_s"], 2),
        "insert_ratio": round(enc["insert_s"] / pla["insert_s"], 2),
        "load_ms": round(enc["load_ms"], 2),
        "plain_load_ms": round(pla["load_ms"], 2),
        "load_ratio": round(enc["load_ms"] / pla["load_ms"], 2),
        "search_100k_ms": round(enc["search_ms"], 1),
        "plain_search_100k_ms": round(pla["search_ms"], 1),
        "search_ratio": round(enc["search_ms"] / pla["search_ms"], 2),
        "search_100k_max_ms": round(enc["search_max_ms"], 1),
    }
    print(f"{'':34}{'vault':>10}{'plain':>10}{'ratio':>8}")
    print(
        f"{'insert 10,000 messages (s)':34}{result['insert_s']:>10}"
        f"{result['plain_insert_s']:>10}{result['insert_ratio']:>8}"
    )
    print(
        f"{'load 1,000-message thread (ms)':34}{result['load_ms']:>10}"
        f"{result['plain_load_ms']:>10}{result['load_ratio']:>8}"
    )
    print(
        f"{'search 100,000 messages (ms)':34}{result['search_100k_ms']:>10}"
        f"{result['plain_search_100k_ms']:>10}{result['search_ratio']:>8}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
