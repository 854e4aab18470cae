"""Domain packs on the embedded model: do they help, and how fast does a pack conversation start?

1. Accuracy of each built-in pack's own multiple-choice `eval` set, with the pack (system
   prompt, examples and retrieved sources, exactly as a chat turn) and without it (the bare
   question). Each option is scored by the model's log-likelihood of it as the answer,
   normalised by the option's length in characters; the best-scoring option is the answer.
2. Time to first token of a new medical conversation, cold (the pack's prefix must be
   prefilled) and warm (its saved KV state is restored), alternating rounds, with another
   conversation in the KV cache before each warm start. Reported end to end (the question's
   sources are prefilled at send time), warm with the sources evaluated while the user typed
   (what the app does once typing pauses), and for the prefix alone (prefill vs restore).
Prints tables, then, as the last line, one JSON object.

    .venv/bin/python bench/packs.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from bastion.app import pack_library, packs, turn
from bastion.models import compute
from bastion.models.discovery import embedded_model_path
from bastion.models.engine import ChatMessage, Engine
from bastion.models.settings import SamplingSettings
from bastion.storage.schema import MessageMeta
from bastion.storage.store import Store
from bastion.storage.vault import memory_store

FIRST_TOKEN = SamplingSettings(temperature=0.0, max_tokens=1, seed=1)
QUESTIONS = [
    "What is the maximum daily dose of paracetamol for an adult?",
    "Which painkiller is safer with warfarin?",
    "What does an HbA1c of 50 mmol/mol mean?",
    "When should a baby with a fever see a doctor?",
    "What blood pressure reading counts as high?",
    "Do antibiotics help with a cold?",
]


def pack_messages(
    store: Store, engine: Engine, pack: packs.Pack, question: str
) -> list[ChatMessage]:
    checked = turn.check_question(store, pack, question, lambda t: len(engine.tokenize(t)))
    meta = MessageMeta(sources=checked.meta.sources)
    return turn.prompt_messages(pack, [turn.unsaved_question(question, meta)])


def accuracy(engine: Engine, store: Store, pack: packs.Pack, with_pack: bool) -> float:
    right = 0
    for q in pack.eval:
        if with_pack:
            msgs = pack_messages(store, engine, pack, q.question)
        else:
            msgs = [ChatMessage(role="user", content=q.question)]
        scores = engine.option_logprobs(msgs, q.options)
        normalised = [s / max(1, len(o)) for s, o in zip(scores, q.options, strict=True)]
        right += normalised.index(max(normalised)) == q.answer
    return right / len(pack.eval)


def ttft(engine: Engine, msgs: list[ChatMessage]) -> tuple[float, int]:
    start = time.perf_counter()
    gen = engine.chat(msgs, FIRST_TOKEN)
    gen.text()
    return time.perf_counter() - start, gen.stats.prompt_tokens_evaluated


FRESH_PW = "bench passphrase"


def fresh_child(folder: str, question: str) -> None:
    """In a new process: open the vault, load the model, start a medical conversation and
    print (as JSON) the time to first token when sending ``question`` after the app's typing
    pause prepared it, and when sent without that pause; and the prefix seconds spent."""
    from bastion.app.session import ChatSession

    session = ChatSession(Path(folder))
    session.unlock(bytearray(FRESH_PW.encode()))
    session.load_model()
    out: dict[str, float] = {}
    for mode in ("typed", "sent"):
        session.new_conversation(pack_id="medical")
        session.sampling_override = FIRST_TOKEN
        start = time.perf_counter()
        if mode == "typed":
            session.prefetch(question)  # the typing pause, before Enter
            start = time.perf_counter()
        pending = session.send(question)
        gen = session.generate(pending)
        gen.text()
        out[f"ttft_{mode}_s"] = time.perf_counter() - start
        out[f"prefix_{mode}_s"] = pending.prefix_s
        session.finish(pending, "")
        session.engine.chat(  # type: ignore[union-attr]
            [ChatMessage(role="user", content="something else")], FIRST_TOKEN
        ).text()
    session.lock()
    print(json.dumps(out))


def fresh_process(rounds: int) -> dict[str, float]:
    """Time to first token of a new medical conversation in a fresh process whose vault keeps
    the pack prefix's state from an earlier run."""
    import subprocess
    import tempfile

    from bastion.storage.crypto import KdfParams
    from bastion.storage.vault import Vault

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "vault"
        Vault.create(folder, FRESH_PW, KdfParams(8 * 1024, 1)).close()
        env = {**os.environ, "BASTION_CACHE_DIR": str(Path(tmp) / "cache")}
        runs = []
        for r in range(rounds + 1):  # the first run computes the prefix and saves it
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(folder), QUESTIONS[r % len(QUESTIONS)]],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    first, later = runs[0], runs[1:]
    return {
        "first_run_prefix_s": round(first["prefix_typed_s"], 3),
        "fresh_process_ttft_typed_s": round(statistics.median(r["ttft_typed_s"] for r in later), 3),
        "fresh_process_ttft_sent_s": round(statistics.median(r["ttft_sent_s"] for r in later), 3),
        "fresh_process_prefix_s": round(max(r["prefix_typed_s"] for r in later), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", nargs=2, metavar=("VAULT", "QUESTION"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        fresh_child(*args.child)
        return
    path = embedded_model_path()
    assert path is not None, "the embedded model is not installed: run `make test`"
    engine = Engine(path)
    store = memory_store()
    pack_library.install_builtins(store)

    result: dict[str, object] = {"model": path.name}
    print(f"{'pack':8} {'questions':>9} {'without pack':>13} {'with pack':>10}")
    for pack_id in packs.builtin_ids():
        pack = packs.builtin(pack_id)
        without = accuracy(engine, store, pack, with_pack=False)
        engine.clear_cache()
        with_ = accuracy(engine, store, pack, with_pack=True)
        engine.clear_cache()
        chance = statistics.mean(1 / len(q.options) for q in pack.eval)
        print(
            f"{pack_id:8} {len(pack.eval):9d} {without:13.1%} {with_:10.1%}  (chance {chance:.0%})"
        )
        result[f"{pack_id}_accuracy_without_pack"] = round(without, 3)
        result[f"{pack_id}_accuracy_with_pack"] = round(with_, 3)
        result[f"{pack_id}_eval_questions"] = len(pack.eval)

    medical = packs.builtin("medical")
    prefix = turn.prefix_messages(medical)
    cold, warm, typed, prefill, restore, suffix = [], [], [], [], [], []
    for r in range(args.rounds):
        for i, question in enumerate(QUESTIONS):
            msgs = pack_messages(store, engine, medical, question)
            # Cold: nothing kept; the app warms the prefix, then answers.
            engine.clear_cache()
            start = time.perf_counter()
            _, spent = engine.remember_prefix(prefix)
            ttft(engine, msgs)
            cold.append(time.perf_counter() - start)
            prefill.append(spent)
            # Warm: another conversation ran in between; the prefix state is restored.
            engine.chat(
                [ChatMessage(role="user", content=f"Unrelated chat {r} {i}")], FIRST_TOKEN
            ).text()
            start = time.perf_counter()
            engine.remember_prefix(prefix)
            _first, evaluated = ttft(engine, msgs)
            warm.append(time.perf_counter() - start)
            suffix.append(evaluated)
            # Warm, and the sources were evaluated while the user typed (as the app does when
            # typing pauses): sending evaluates the question only.
            engine.chat(
                [ChatMessage(role="user", content=f"Other chat {r} {i}")], FIRST_TOKEN
            ).text()
            sources = msgs[-1].content.rsplit("Question: ", 1)[0] + "Question: "
            engine.remember_prefix(prefix)
            engine.prefill([*msgs[:-1], ChatMessage(role="user", content=sources)])
            t0 = time.perf_counter()
            ttft(engine, msgs)
            typed.append(time.perf_counter() - t0)
            # The restore alone: a question whose suffix is a single short turn.
            engine.chat([ChatMessage(role="user", content="x")], FIRST_TOKEN).text()
            t0 = time.perf_counter()
            engine._restore_prefix([*engine.fixed_prefix(prefix), 0], 0)
            restore.append(time.perf_counter() - t0)
    n_prefix = len(engine.fixed_prefix(prefix))
    c, w, ty = statistics.median(cold), statistics.median(warm), statistics.median(typed)
    p, rs = statistics.median(prefill), statistics.median(restore)
    print()
    print(
        f"medical prefix: {n_prefix} tokens; question + sources: "
        f"median {statistics.median(suffix):.0f} tokens"
    )
    print(
        f"time to first token, new medical conversation: cold {c:.2f} s, warm {w:.2f} s "
        f"-> {c / w:.1f}x"
    )
    print(f"warm, sources prepared while typing: {ty:.2f} s -> {c / ty:.1f}x")
    print(f"prefix alone: prefill {p:.2f} s, restore {rs * 1000:.1f} ms -> {p / rs:.0f}x")
    result.update(
        medical_prefix_tokens=n_prefix,
        suffix_tokens_median=statistics.median(suffix),
        ttft_cold_s=round(c, 3),
        ttft_warm_s=round(w, 3),
        ttft_warm_speedup=round(c / w, 2),
        ttft_warm_typed_s=round(ty, 3),
        ttft_warm_typed_speedup=round(c / ty, 2),
        prefix_prefill_s=round(p, 3),
        prefix_restore_s=round(rs, 4),
        prefix_speedup=round(p / rs, 1),
    )
    engine.close()
    fresh = fresh_process(args.rounds)
    print(
        f"new medical conversation in a fresh process (prefix state kept in the vault): "
        f"{fresh['fresh_process_ttft_typed_s']:.2f} s with the typing pause, "
        f"{fresh['fresh_process_ttft_sent_s']:.2f} s sent at once "
        f"(the first run computed the prefix in {fresh['first_run_prefix_s']:.2f} s)"
    )
    result.update(fresh)
    print(json.dumps(result))


if __name__ == "__main__":
    # All of it on the thread that runs llama.cpp (bastion.models.compute): answers are
    # then computed inline, as in the app, not handed over token by token.
    compute.run(main)
