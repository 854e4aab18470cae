"""Bastion's engine against llama.cpp's own low-level loop, on the embedded model.

In one run, alternating rounds so that both sides see the same machine state:
  (a) raw llama.cpp through llama-cpp-python's low-level API: one prefill batch, then a
      greedy `llama_decode` loop sampling on the C side;
  (b) the same prompt and token count through `Engine.complete()`;
  (c) time to first token at turns 1, 5 and 10 of a scripted chat, with KV reuse and with
      the cache cleared before every turn.
Prints a table, then, as the last line, one JSON object.

    .venv/bin/python bench/engine.py [--rounds 6] [--tokens 128]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import time

import llama_cpp

from bastion.models import compute
from bastion.models.discovery import embedded_model_path
from bastion.models.engine import ChatMessage, Engine
from bastion.models.settings import LoadSettings, SamplingSettings

PROMPT = (
    "The following is a long, careful history of the river towns of the north, written for "
    "students. It covers the founding of each town, the trade that made it rich, and the "
    "floods that shaped its streets. "
) * 12

QUESTIONS = [
    "Hello! Who are you?",
    "What is a river delta?",
    "Name three large rivers in Europe.",
    "Which of them is the longest?",
    "How do floods shape towns?",
    "What is a levee?",
    "Give one tip for visiting a river town.",
    "What food is typical there?",
    "Summarise our chat in one sentence.",
    "Thank you. Any final advice?",
]


def raw_round(engine: Engine, tokens: list[int], n_decode: int) -> tuple[float, float]:
    """Prefill and decode tok/s of llama.cpp's own loop on the engine's context."""
    llama = engine.llama
    ctx = llama._ctx.ctx
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
    llama.n_tokens = 0  # keep the Llama object's view consistent with the cleared cache
    sampler = llama_cpp.llama_sampler_init_greedy()
    try:
        arr = (llama_cpp.llama_token * len(tokens))(*tokens)
        t0 = time.perf_counter()
        n_batch = engine.load_settings.n_batch
        for i in range(0, len(tokens), n_batch):
            chunk = min(n_batch, len(tokens) - i)
            ptr = ctypes.cast(
                ctypes.addressof(arr) + i * ctypes.sizeof(llama_cpp.llama_token),
                ctypes.POINTER(llama_cpp.llama_token),
            )
            if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(ptr, chunk)) != 0:
                raise RuntimeError("llama_decode failed")
        token = llama_cpp.llama_sampler_sample(sampler, ctx, -1)
        t1 = time.perf_counter()
        one = (llama_cpp.llama_token * 1)()
        for _ in range(n_decode - 1):
            one[0] = token
            if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1)) != 0:
                raise RuntimeError("llama_decode failed")
            token = llama_cpp.llama_sampler_sample(sampler, ctx, -1)
        t2 = time.perf_counter()
    finally:
        llama_cpp.llama_sampler_free(sampler)
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
    return len(tokens) / (t1 - t0), (n_decode - 1) / (t2 - t1)


def engine_round(engine: Engine, n_decode: int) -> tuple[float, float, int]:
    engine.clear_cache()
    gen = engine.complete(PROMPT, SamplingSettings(temperature=0.0, max_tokens=n_decode))
    gen.text()
    s = gen.stats
    return s.prefill_tokens_per_s, s.decode_tokens_per_s, s.generated_tokens


def chat_ttft(engine: Engine, reuse: bool) -> list[float]:
    engine.clear_cache()
    msgs = [ChatMessage(role="system", content="You are a concise, friendly guide.")]
    ttft = []
    for q in QUESTIONS:
        msgs.append(ChatMessage(role="user", content=q))
        if not reuse:
            engine.clear_cache()
        gen = engine.chat(msgs, SamplingSettings(temperature=0.0, max_tokens=48, seed=1))
        answer = gen.text()
        ttft.append(gen.stats.time_to_first_token_s)
        msgs.append(ChatMessage(role="assistant", content=answer))
    return ttft


def _long_chat(topic: str) -> list[ChatMessage]:
    text = " ".join(
        f"Note {i}: the {topic} ledger for week {i} lists {i * 7 % 31} entries." for i in range(95)
    )
    return [
        ChatMessage(role="system", content="You are a concise, friendly guide."),
        ChatMessage(role="user", content=f"Here are my notes. {text} Summarise them."),
    ]


def switch_rounds(engine: Engine, rounds: int) -> tuple[list[float], list[float], int]:
    """Time to first token of the next turn of a ~1,500-token conversation: continued at
    once, and after switching to another long conversation and back (its KV state kept in
    memory). Alternating rounds."""
    greedy = SamplingSettings(temperature=0.0, max_tokens=24, seed=1)
    cont, back = [], []
    size = 0
    for r in range(rounds):
        for mode in ("continue", "switch") if r % 2 == 0 else ("switch", "continue"):
            engine.clear_cache()
            chat = _long_chat(f"harbour {r} {mode}")
            answer = engine.chat(chat, greedy).text()
            chat += [
                ChatMessage(role="assistant", content=answer),
                ChatMessage(role="user", content="Which week had the most entries?"),
            ]
            if mode == "switch":
                engine.chat(_long_chat(f"orchard {r}"), greedy).text()
            gen = engine.chat(chat, greedy)
            gen.text()
            size = gen.stats.prompt_tokens
            (cont if mode == "continue" else back).append(gen.stats.time_to_first_token_s)
    return cont, back, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=128, help="tokens to decode per round")
    args = ap.parse_args()
    path = embedded_model_path()
    if path is None:
        sys.exit("the embedded model is not installed: run `make install`")
    load = LoadSettings()
    engine = Engine(path, load)
    tokens = list(engine.llama.tokenize(PROMPT.encode(), add_bos=True, special=False))

    raw_pp, raw_tg, eng_pp, eng_tg = [], [], [], []
    engine_round(engine, 8)  # warm-up: page in the weights
    n = args.tokens
    for i in range(args.rounds):
        # Alternate which side goes first, so drift in machine state cancels out.
        for side in ("engine", "raw") if i % 2 == 0 else ("raw", "engine"):
            if side == "engine":
                pp, tg, n = engine_round(engine, args.tokens)
                eng_pp.append(pp)
                eng_tg.append(tg)
            else:
                pp, tg = raw_round(engine, tokens, n)
                raw_pp.append(pp)
                raw_tg.append(tg)
    with_reuse = chat_ttft(engine, reuse=True)
    without = chat_ttft(engine, reuse=False)
    cont, back, convo_tokens = switch_rounds(engine, max(4, args.rounds))
    ratios = [b / c for b, c in zip(back, cont, strict=True)]

    med = statistics.median
    result = {
        "model": path.name,
        "threads": load.n_threads,
        "prompt_tokens": len(tokens),
        "decode_tokens": n,
        "raw_prefill_tok_s": round(med(raw_pp), 1),
        "engine_prefill_tok_s": round(med(eng_pp), 1),
        "raw_decode_tok_s": round(med(raw_tg), 1),
        "engine_decode_tok_s": round(med(eng_tg), 1),
        "decode_ratio": round(med(eng_tg) / med(raw_tg), 3),
        "prefill_ratio": round(med(eng_pp) / med(raw_pp), 3),
        "ttft_turn1_s": round(with_reuse[0], 3),
        "ttft_turn5_s": round(with_reuse[4], 3),
        "ttft_turn10_s": round(with_reuse[9], 3),
        "ttft_turn10_over_turn1": round(with_reuse[9] / with_reuse[0], 2),
        "no_reuse_ttft_turn1_s": round(without[0], 3),
        "no_reuse_ttft_turn5_s": round(without[4], 3),
        "no_reuse_ttft_turn10_s": round(without[9], 3),
        "switch_conversation_tokens": convo_tokens,
        "continue_ttft_s": round(med(cont), 3),
        "switch_back_ttft_s": round(med(back), 3),
        "switch_back_over_continue": round(med(ratios), 2),
        "switch_back_over_continue_per_pair": [round(x, 2) for x in ratios],
    }
    print(f"model {path.name}, {load.n_threads} threads, n_ctx {load.n_ctx}, {args.rounds} rounds")
    print(f"{'':24}{'raw llama.cpp':>15}{'Bastion':>12}{'ratio':>8}")
    print(
        f"{'prefill tok/s':24}{result['raw_prefill_tok_s']:>15}"
        f"{result['engine_prefill_tok_s']:>12}{result['prefill_ratio']:>8}"
    )
    print(
        f"{'decode tok/s':24}{result['raw_decode_tok_s']:>15}"
        f"{result['engine_decode_tok_s']:>12}{result['decode_ratio']:>8}"
    )
    print(f"\n{'time to first token':24}{'turn 1':>10}{'turn 5':>10}{'turn 10':>10}")
    print(f"{'with KV reuse':24}" + "".join(f"{with_reuse[i]:>10.3f}" for i in (0, 4, 9)))
    print(f"{'cache cleared each turn':24}" + "".join(f"{without[i]:>10.3f}" for i in (0, 4, 9)))
    print(
        f"\nnext turn of a {convo_tokens}-token conversation: continued {result['continue_ttft_s']}"
        f" s, after switching away and back {result['switch_back_ttft_s']} s "
        f"(ratio {result['switch_back_over_continue']})"
    )
    print(json.dumps(result))
    engine.close()


if __name__ == "__main__":
    # All of it on the thread that runs llama.cpp (bastion.models.compute): answers are
    # then computed inline, as in the app, not handed over token by token.
    compute.run(main)
