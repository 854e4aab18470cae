"""The release bundle's llama.cpp against the developer install's, on the embedded model.

The bundle carries one CPU backend per instruction-set level and ggml picks one at run time;
the goal (issue 18) is no speed lost: the bundle's prefill and decode rates are at least 0.95
of the developer build's on the same machine. Both run the same command, `bastion ask --stats`
with a long prompt, greedy, a fixed number of tokens, in a fresh home folder (nothing saved),
in alternating rounds within one run (reference first in even rounds, bundle first in odd
ones) so both see the same machine state. Prefill rate = prompt tokens evaluated / time to the
first token; decode rate = llama.cpp's tokens per second after the first. Each side's CPU
backend (`bastion doctor`) is printed. Prints a table, then, as the last line, one JSON
object.

    .venv/bin/python bench/bundle.py [--rounds 9] [--tokens 200] \
        [--bundle dist/bastion/bastion] [--reference .venv/bin/bastion]

`--reference` may be any `bastion` executable, e.g. one installed in another virtualenv from a
llama-cpp-python built with other options.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.95
PROMPT = (
    "The following is a long, careful history of the river towns of the north, written for "
    "students. It covers the founding of each town, the trade that made it rich, and the "
    "floods that shaped its streets. "
) * 10 + "Continue the history in the same style."
STATS = re.compile(
    r"\[stats\] prompt (\d+) tokens \((\d+) evaluated\), (\d+) generated, "
    r"first token ([\d.]+) s, ([\d.]+) tok/s"
)


def run_env(home: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
    }


def measure(exe: Path, home: Path, tokens: int) -> tuple[float, float]:
    """(prefill tok/s, decode tok/s) of one `ask --stats` run."""
    proc = subprocess.run(
        [str(exe), "ask", "--stats", "--temperature", "0", "--max-tokens", str(tokens), PROMPT],
        env=run_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    found = STATS.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"{exe}: ask failed ({proc.returncode}): {proc.stderr[-500:]}")
    evaluated, generated = int(found[2]), int(found[3])
    ttft, decode = float(found[4]), float(found[5])
    if generated < tokens // 2:
        raise SystemExit(f"{exe}: only {generated} tokens generated; raise --tokens")
    return evaluated / ttft, decode


def backend(exe: Path, home: Path) -> str:
    proc = subprocess.run(
        [str(exe), "doctor", "--json"],
        env=run_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    try:
        checks = {c["name"]: c for c in json.loads(proc.stdout)}
    except ValueError:
        return f"unknown (doctor exited {proc.returncode})"
    return checks.get("cpu backend", {}).get("detail", "unknown").split(" (")[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / "bastion" / "bastion")
    parser.add_argument("--reference", type=Path, default=ROOT / ".venv" / "bin" / "bastion")
    args = parser.parse_args()
    sides = {"reference": args.reference.absolute(), "bundle": args.bundle.absolute()}
    for name, exe in sides.items():
        if not exe.is_file():
            raise SystemExit(f"no {name} executable at {exe}")

    results: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="bastion-bench-bundle-") as tmp:
        home = Path(tmp)
        backends = {name: backend(exe, home) for name, exe in sides.items()}
        for exe in sides.values():
            measure(exe, home, 8)  # warm the page cache for the model and libraries
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                results[name].append(measure(sides[name], home, args.tokens))
            ref, bun = results["reference"][-1], results["bundle"][-1]
            print(
                f"round {r + 1}: prefill {ref[0]:7.1f} vs {bun[0]:7.1f} tok/s, "
                f"decode {ref[1]:6.1f} vs {bun[1]:6.1f} tok/s (reference vs bundle)",
                file=sys.stderr,
            )

    def med(name: str, i: int) -> float:
        return statistics.median(x[i] for x in results[name])

    def pair_ratio(i: int) -> float:
        return statistics.median(
            b[i] / a[i] for a, b in zip(results["reference"], results["bundle"], strict=True)
        )

    ratio = {"prefill": pair_ratio(0), "decode": pair_ratio(1)}
    print(f"{'':12}{'prefill tok/s':>15}{'decode tok/s':>15}  cpu backend")
    for name in sides:
        print(f"{name:12}{med(name, 0):15.1f}{med(name, 1):15.1f}  {backends[name]}")
    print(f"{'ratio':12}{ratio['prefill']:15.3f}{ratio['decode']:15.3f}  (goal >= {GOAL})")
    summary = {
        "bench": "bundle",
        "rounds": args.rounds,
        "tokens": args.tokens,
        "cpu_backend": backends,
        "prefill_tok_s": {name: round(med(name, 0), 1) for name in sides},
        "decode_tok_s": {name: round(med(name, 1), 1) for name in sides},
        "ratio": {k: round(v, 3) for k, v in ratio.items()},
        "goal": GOAL,
        "pass": all(v >= GOAL for v in ratio.values()),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
