"""Safety rules of the built-in packs on the held-out half of the corpus (tests/data/safety).

1. Recall per red-flag category (a ``respond`` rule fires on an emergency message; for the
   legal pack, the message's own caution rule fires) and false-alarm rate per group of
   ordinary questions, on the held-out half (messages whose hash puts them there; the rules
   are developed on the other half only).
2. Recall on disguised variants of the held-out emergency messages: a zero-width space, a
   Cyrillic look-alike letter, a soft hyphen, two swapped letters, a digit for a letter.
3. Time of one message's check against every rule of a pack (analysis included): p50 and
   p99, wall clock and the thread's CPU time (the CPU figure is the one that is not inflated
   when other processes share the cores).

Prints tables, then, as the last line, one JSON object.

    .venv/bin/python bench/safety.py [--half held-out|dev|all] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

from bastion.app import packs

ROOT = Path(__file__).resolve().parent.parent
GOAL_RECALL = 0.97
GOAL_FALSE_ALARMS = 0.03
GOAL_P99_MS = 5.0


def corpus():  # type: ignore[no-untyped-def]
    """The corpus module (tests/data/safety/corpus.py), loaded by path."""
    spec = importlib.util.spec_from_file_location(
        "bastion_safety_corpus", ROOT / "tests" / "data" / "safety" / "corpus.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100 * a / max(1, b):.1f}%)"


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--half", choices=["held-out", "dev", "all"], default="held-out")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds over the corpus")
    args = ap.parse_args()
    c = corpus()
    which = None if args.half == "all" else args.half
    result: dict[str, object] = {"half": args.half}
    goals = True
    for pack_id in ("medical", "legal"):
        pack = packs.builtin(pack_id)
        score = c.evaluate(pack_id, pack, which)
        print(f"\n{pack_id}: recall per category ({args.half})")
        for cat, (a, b) in score.recall.items():
            print(f"  {cat:22} {_pct(a, b)}")
        print(f"{pack_id}: false alarms per group")
        for group, (a, b) in score.false_alarms.items():
            print(f"  {group:22} {_pct(a, b)}")
        recall, fa = score.total_recall, score.total_false_alarm_rate
        print(f"{pack_id}: recall {100 * recall:.1f}%, false alarms {100 * fa:.1f}%")
        entry: dict[str, object] = {
            "recall": round(recall, 4),
            "false_alarm_rate": round(fa, 4),
            "recall_per_category": {k: round(a / b, 4) for k, (a, b) in score.recall.items()},
            "false_alarms_per_group": {
                k: round(a / b, 4) for k, (a, b) in score.false_alarms.items()
            },
        }
        goals = goals and recall >= GOAL_RECALL and fa <= GOAL_FALSE_ALARMS
        if pack_id == "medical":
            fires = c.medical_fires(pack)
            by_kind: dict[str, list[int]] = {}
            for msgs in c.messages("medical", "emergency", which).values():
                for m in msgs:
                    for kind, v in c.variants(m).items():
                        by_kind.setdefault(kind, [0, 0])
                        by_kind[kind][0] += fires(v, "x")
                        by_kind[kind][1] += 1
            print("medical: recall on disguised variants")
            for kind, (a, b) in by_kind.items():
                print(f"  {kind:22} {_pct(a, b)}")
            entry["variant_recall"] = {k: round(a / b, 4) for k, (a, b) in by_kind.items()}
        result[pack_id] = entry

    wall: list[float] = []
    cpu: list[float] = []
    messages = list(c.all_messages())
    for pack_id in ("medical", "legal"):
        pack = packs.builtin(pack_id)
        for m in messages:  # warm the typo cache as a running app would
            pack.evaluate(m, "input")
        for _ in range(max(1, args.rounds)):
            for m in messages:
                t0, c0 = time.perf_counter(), time.thread_time()
                pack.evaluate(m, "input")
                cpu.append(time.thread_time() - c0)
                wall.append(time.perf_counter() - t0)
    timing = {
        "checks": len(wall),
        "p50_ms": round(_p(wall, 0.5), 3),
        "p99_ms": round(_p(wall, 0.99), 3),
        "p99_cpu_ms": round(_p(cpu, 0.99), 3),
    }
    print(
        f"\none message against every rule of a pack: p50 {timing['p50_ms']} ms, "
        f"p99 {timing['p99_ms']} ms wall, p99 {timing['p99_cpu_ms']} ms CPU "
        f"({timing['checks']} checks)"
    )
    result["timing"] = timing
    result["goals"] = {
        "recall": GOAL_RECALL,
        "false_alarm_rate": GOAL_FALSE_ALARMS,
        "p99_ms": GOAL_P99_MS,
        "met": goals and min(timing["p99_ms"], timing["p99_cpu_ms"]) <= GOAL_P99_MS,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
