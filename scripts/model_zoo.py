"""Write the model zoo: tiny GGUF files, one per popular model family, for the tests.

Each file has the family's real architecture, its real tokenizer (the vocab-only GGUF files
llama.cpp ships under ``vendor/llama.cpp/models/`` in the llama-cpp-python source package,
and for Gemma the tokenizer of the Gemma-3-270M package) and its official chat template, with
tiny deterministic weights: a one-layer "bigram" whose attention is zero and whose
feed-forward maps the last token to the next word of a fixed answer, then to the family's
end-of-turn token. So every file's answer and end token are known in advance
(``manifest.json``), whatever the prompt.

Usage: ``python scripts/model_zoo.py --sdist llama_cpp_python-0.3.36.tar.gz --gemma
gemma-3-270m-q4_k_m.gguf --out DIR``. The Makefile runs it once per version of this script
(the output folder is named after the script's hash) and the tests read ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np

N_EMBD = 32
N_HEAD = 2
N_HEAD_KV = 1
HEAD_DIM = N_EMBD // N_HEAD
N_FF = 32

# Answer words: each a single token of the family's vocabulary.
WORDS = ["Hello", " from", " the", " model", "."]

GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

# Phi-3-mini-4k-instruct as released in April 2024: a system message is dropped silently.
PHI3_APRIL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}"
    "{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}"
    "{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n'}}"
    "{% endif %}{% endfor %}"
)

# Mistral-7B-Instruct-v0.3 (its tool-calling branches left out: Bastion sends no tools).
MISTRAL_V03_TEMPLATE = """{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results") %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

# TinyLlama-1.1B-Chat-v1.0 (Zephyr style).
TINYLLAMA_TEMPLATE = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + "
    "message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}"
)

RAISING_TEMPLATE = "{{ raise_exception('this template refuses every conversation') }}"
MUTATING_TEMPLATE = (
    "{% set _ = messages.append({'role': 'user', 'content': 'injected'}) %}"
    "{% for m in messages %}{{ m['content'] }}{% endfor %}"
)
BROKEN_TEMPLATE = "{% for message in messages %}{{ message['content'] }"


@dataclass
class Family:
    """One zoo file: what to build and what the tests expect of it."""

    name: str
    arch: str
    vocab: str
    template: str | None
    eot: str
    context: int
    answer_words: list[str] = field(default_factory=lambda: list(WORDS))
    reasoning: list[str] = field(default_factory=list)
    general_name: str = ""
    split: int = 1
    expect_usable: bool = True
    extra_tokens: dict[int, tuple[str, int]] = field(default_factory=dict)


def _vendored(sdist: Path, member: str, out: Path) -> Path:
    target = out / "_src" / Path(member).name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as tar:
            names = [n for n in tar.getnames() if n.endswith(member)]
            if not names:
                raise SystemExit(f"{member} is not in {sdist}")
            src = tar.extractfile(names[0])
            assert src is not None
            target.write_bytes(src.read())
    return target


@dataclass
class Vocab:
    model: str
    pre: str | None
    tokens: list[str]
    scores: list[float] | None
    types: list[int]
    merges: list[str] | None
    bos: int | None
    eos: int | None
    unk: int | None
    add_bos: bool | None
    add_space_prefix: bool | None = None


def _field(reader: gguf.GGUFReader, key: str) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return None
    if f.types and f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[-1]).decode("utf-8")
    return f.parts[-1].tolist()[0]


def read_vocab(path: Path) -> Vocab:
    r = gguf.GGUFReader(str(path))
    return Vocab(
        model=_field(r, "tokenizer.ggml.model"),
        pre=_field(r, "tokenizer.ggml.pre"),
        tokens=_field(r, "tokenizer.ggml.tokens"),
        scores=_field(r, "tokenizer.ggml.scores"),
        types=_field(r, "tokenizer.ggml.token_type"),
        merges=_field(r, "tokenizer.ggml.merges"),
        bos=_field(r, "tokenizer.ggml.bos_token_id"),
        eos=_field(r, "tokenizer.ggml.eos_token_id"),
        unk=_field(r, "tokenizer.ggml.unknown_token_id"),
        add_bos=_field(r, "tokenizer.ggml.add_bos_token"),
        add_space_prefix=_field(r, "tokenizer.ggml.add_space_prefix"),
    )


def mistral_v03_vocab(spm: Vocab) -> Vocab:
    """Mistral v0.3's layout: the v0.2 (Llama-2 style) pieces after 768 control tokens."""
    controls = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]"]
    controls += ["[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"]
    controls += [f"[control_{i}]" for i in range(len(controls), 768)]
    assert spm.scores is not None
    return Vocab(
        model="llama",
        pre="default",
        tokens=controls + spm.tokens[3:],
        scores=[0.0] * len(controls) + spm.scores[3:],
        types=[2] + [3] * (len(controls) - 1) + spm.types[3:],
        merges=None,
        bos=1,
        eos=2,
        unk=0,
        add_bos=True,
    )


def _piece(vocab: Vocab, word: str) -> str:
    if word.startswith("<") and word.endswith(">"):
        return word
    if vocab.model == "gpt2":
        return word.replace(" ", "Ġ").replace("\n", "Ċ")
    return word.replace(" ", "▁")


def _weights(fam: Family, vocab: Vocab) -> tuple[dict[str, np.ndarray], str, list[int]]:
    """Tensors of a one-layer model that always answers ``fam``'s words then its end token."""
    index = {t: i for i, t in enumerate(vocab.tokens)}
    spm = vocab.model != "gpt2"
    words = list(fam.reasoning) + list(fam.answer_words)
    if spm and words and not words[0].startswith("<"):
        words[0] = " " + words[0].lstrip()
    chain = []
    for w in words:
        p = _piece(vocab, w)
        if p not in index:
            raise SystemExit(f"{fam.name}: {p!r} is not one token of the vocabulary")
        chain.append(index[p])
    eot = index[fam.eot]
    assert len(set(chain)) == len(chain), "answer tokens must be distinct"
    n_vocab = len(vocab.tokens)
    emb = np.zeros((n_vocab, N_EMBD), dtype=np.float32)
    emb[:, 0] = 1.0  # slot 0: every token outside the answer
    slots = {tok: i + 1 for i, tok in enumerate([*chain, eot])}
    for tok, s in slots.items():
        emb[tok] = 0.0
        emb[tok, s] = 1.0
    # Feed-forward: hidden unit j fires for slot j and writes the next token's slot.
    nexts = {0: chain[0]} | {chain[i]: chain[i + 1] for i in range(len(chain) - 1)}
    nexts[chain[-1]] = eot
    gate = np.zeros((N_FF, N_EMBD), dtype=np.float32)
    down = np.zeros((N_EMBD, N_FF), dtype=np.float32)
    for j, (tok, nxt) in enumerate(nexts.items()):
        s = 0 if j == 0 and tok == 0 else slots[tok]
        gate[j, s] = 1.0
        down[slots[nxt], j] = 10.0
    a = fam.arch
    t: dict[str, np.ndarray] = {"token_embd.weight": emb.astype(np.float16)}
    t["output_norm.weight"] = np.full(N_EMBD, 8.0, dtype=np.float32)
    blk = "blk.0."
    t[blk + "attn_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)
    q = np.zeros((N_HEAD * HEAD_DIM, N_EMBD), dtype=np.float16)
    kv = np.zeros((N_HEAD_KV * HEAD_DIM, N_EMBD), dtype=np.float16)
    if a == "phi3":
        t[blk + "attn_qkv.weight"] = np.concatenate([q, kv, kv])
    else:
        t[blk + "attn_q.weight"] = q
        t[blk + "attn_k.weight"] = kv
        t[blk + "attn_v.weight"] = kv
    if a == "qwen2":
        t[blk + "attn_q.bias"] = np.zeros(N_HEAD * HEAD_DIM, dtype=np.float32)
        t[blk + "attn_k.bias"] = np.zeros(N_HEAD_KV * HEAD_DIM, dtype=np.float32)
        t[blk + "attn_v.bias"] = np.zeros(N_HEAD_KV * HEAD_DIM, dtype=np.float32)
    if a in ("qwen3", "gemma3"):
        t[blk + "attn_q_norm.weight"] = np.ones(HEAD_DIM, dtype=np.float32)
        t[blk + "attn_k_norm.weight"] = np.ones(HEAD_DIM, dtype=np.float32)
    t[blk + "attn_output.weight"] = np.zeros((N_EMBD, N_HEAD * HEAD_DIM), dtype=np.float16)
    t[blk + "ffn_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)
    if a == "phi3":
        t[blk + "ffn_up.weight"] = np.concatenate([gate, gate]).astype(np.float16)
    else:
        t[blk + "ffn_gate.weight"] = gate.astype(np.float16)
        t[blk + "ffn_up.weight"] = gate.astype(np.float16)
    t[blk + "ffn_down.weight"] = down.astype(np.float16)
    if a in ("gemma2", "gemma3"):
        t[blk + "post_attention_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)
        t[blk + "post_ffw_norm.weight"] = np.full(N_EMBD, 20.0, dtype=np.float32)
    detok = "".join(
        vocab.tokens[i].replace("Ġ", " ").replace("Ċ", "\n").replace("▁", " ") for i in chain
    )
    return t, detok, chain


def write_family(fam: Family, vocab: Vocab, out: Path) -> dict[str, Any]:
    tensors, text, chain = _weights(fam, vocab)
    arch = fam.arch
    names = list(tensors)
    shards: list[list[str]] = [names[i :: fam.split] for i in range(fam.split)]
    paths = []
    for i, shard in enumerate(shards):
        if fam.split > 1:
            path = out / f"{fam.name}-{i + 1:05d}-of-{fam.split:05d}.gguf"
        else:
            path = out / f"{fam.name}.gguf"
        w = gguf.GGUFWriter(str(path), arch)
        if fam.split > 1:
            w.add_uint16("split.no", i)
            w.add_uint16("split.count", fam.split)
            w.add_int32("split.tensors.count", len(names))
        if i == 0:
            w.add_name(fam.general_name or fam.name)
            w.add_context_length(fam.context)
            w.add_embedding_length(N_EMBD)
            w.add_block_count(1)
            w.add_feed_forward_length(N_FF)
            w.add_head_count(N_HEAD)
            w.add_head_count_kv(N_HEAD_KV)
            w.add_layer_norm_rms_eps(1e-6)
            w.add_rope_dimension_count(HEAD_DIM)
            w.add_key_length(HEAD_DIM)
            w.add_value_length(HEAD_DIM)
            w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
            if arch in ("gemma2", "gemma3"):
                w.add_sliding_window(512)
            if arch == "gemma2":
                w.add_attn_logit_softcapping(50.0)
                w.add_final_logit_softcapping(30.0)
            if arch == "phi3":
                w.add_uint32(f"{arch}.rope.scaling.original_context_length", 4096)
            w.add_tokenizer_model(vocab.model)
            if vocab.pre:
                w.add_tokenizer_pre(vocab.pre)
            w.add_token_list(vocab.tokens)
            if vocab.scores is not None:
                w.add_token_scores(vocab.scores)
            w.add_token_types(vocab.types)
            if vocab.merges:
                w.add_token_merges(vocab.merges)
            if vocab.bos is not None:
                w.add_bos_token_id(vocab.bos)
            w.add_eos_token_id(vocab.tokens.index(fam.eot))
            if vocab.unk is not None:
                w.add_unk_token_id(vocab.unk)
            if vocab.add_bos is not None:
                w.add_add_bos_token(vocab.add_bos)
            if vocab.add_space_prefix is not None:
                w.add_add_space_prefix(vocab.add_space_prefix)
            if fam.template is not None:
                w.add_chat_template(fam.template)
        for name in shard:
            w.add_tensor(name, tensors[name])
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        paths.append(path.name)
    answer = "".join(
        vocab.tokens[i].replace("Ġ", " ").replace("Ċ", "\n").replace("▁", " ")
        for i in chain[len(fam.reasoning) :]
    )
    reasoning = "".join(
        vocab.tokens[i].replace("Ġ", " ").replace("Ċ", "\n").replace("▁", " ")
        for i in chain[: len(fam.reasoning)]
    )
    return {
        "files": paths,
        "architecture": arch,
        "eot": fam.eot,
        "answer": answer.strip(),
        "reasoning": reasoning,
        "full": text,
        "context": fam.context,
        "template": fam.template is not None,
        "usable": fam.expect_usable,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sdist", type=Path, required=True, help="llama-cpp-python sdist (.tar.gz)")
    ap.add_argument("--gemma", type=Path, required=True, help="a Gemma 3 GGUF (its tokenizer)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    out: Path = args.out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    models = "vendor/llama.cpp/models/"

    def vendored_vocab(name: str) -> Vocab:
        return read_vocab(_vendored(args.sdist, f"{models}ggml-vocab-{name}.gguf", tmp))

    def template(name: str) -> str:
        return _vendored(args.sdist, f"{models}templates/{name}.jinja", tmp).read_text()

    llama3 = vendored_vocab("llama-bpe")
    qwen = vendored_vocab("qwen2")
    phi3 = vendored_vocab("phi-3")
    spm = vendored_vocab("llama-spm")
    gemma = read_vocab(args.gemma)
    # Qwen3's vocabulary is Qwen2.5's plus its tool and reasoning tokens (user-defined).
    qwen3 = Vocab(**{**qwen.__dict__, "tokens": list(qwen.tokens), "types": list(qwen.types)})
    for i, tok in enumerate(["<tool_call>", "</tool_call>"], start=151657):
        qwen3.tokens[i], qwen3.types[i] = tok, 4
    for i, tok in enumerate(
        ["<tool_response>", "</tool_response>", "<think>", "</think>"], start=151665
    ):
        qwen3.tokens[i], qwen3.types[i] = tok, 4
    qwen25 = Vocab(**{**qwen3.__dict__, "tokens": list(qwen3.tokens)})
    for i in range(151665, 151669):
        qwen25.tokens[i] = f"[PAD{i}]"
    mistral = mistral_v03_vocab(spm)

    fams: list[tuple[Family, Vocab]] = [
        (
            Family(
                "llama-3.1-instruct",
                "llama",
                "llama-bpe",
                template("meta-llama-Llama-3.1-8B-Instruct"),
                "<|eot_id|>",
                131072,
                general_name="Meta Llama 3.1 8B Instruct",
            ),
            llama3,
        ),
        (
            Family(
                "qwen2.5-instruct",
                "qwen2",
                "qwen2",
                template("Qwen-Qwen2.5-7B-Instruct"),
                "<|im_end|>",
                32768,
                general_name="Qwen2.5 7B Instruct",
            ),
            qwen25,
        ),
        (
            Family(
                "qwen3",
                "qwen3",
                "qwen2",
                template("Qwen-Qwen3-0.6B"),
                "<|im_end|>",
                40960,
                reasoning=["<think>", "Let", " me", " think", "</think>"],
                general_name="Qwen3 0.6B",
            ),
            qwen3,
        ),
        (
            Family(
                "gemma-2-it",
                "gemma2",
                "gemma3",
                template("google-gemma-2-2b-it"),
                "<end_of_turn>",
                8192,
                general_name="Gemma 2 2b It",
            ),
            gemma,
        ),
        (
            Family(
                "gemma-3-it",
                "gemma3",
                "gemma3",
                GEMMA3_TEMPLATE,
                "<end_of_turn>",
                32768,
                general_name="Gemma 3 1b It",
            ),
            gemma,
        ),
        (
            Family(
                "phi-3-mini-4k-instruct",
                "phi3",
                "phi-3",
                PHI3_APRIL_TEMPLATE,
                "<|end|>",
                4096,
                general_name="Phi 3 Mini 4k Instruct",
            ),
            phi3,
        ),
        (
            Family(
                "phi-3.5-mini-instruct",
                "phi3",
                "phi-3",
                template("microsoft-Phi-3.5-mini-instruct"),
                "<|end|>",
                131072,
                general_name="Phi 3.5 Mini Instruct",
            ),
            phi3,
        ),
        (
            Family(
                "mistral-7b-instruct-v0.3",
                "llama",
                "mistral",
                MISTRAL_V03_TEMPLATE,
                "</s>",
                32768,
                general_name="Mistral 7B Instruct v0.3",
            ),
            mistral,
        ),
        (
            Family(
                "tinyllama-1.1b-chat",
                "llama",
                "llama-spm",
                TINYLLAMA_TEMPLATE,
                "</s>",
                2048,
                general_name="TinyLlama 1.1B Chat v1.0",
            ),
            spm,
        ),
        (Family("base-no-template", "llama", "llama-spm", None, "</s>", 4096), spm),
        (
            Family("split-model", "llama", "llama-spm", TINYLLAMA_TEMPLATE, "</s>", 2048, split=2),
            spm,
        ),
        (
            Family(
                "unknown-arch",
                "zoo-unknown-arch",
                "llama-spm",
                TINYLLAMA_TEMPLATE,
                "</s>",
                2048,
                expect_usable=False,
            ),
            spm,
        ),
        (
            Family("template-raises", "llama", "llama-spm", RAISING_TEMPLATE, "</s>", 2048),
            spm,
        ),
        (
            Family("template-mutates", "llama", "llama-spm", MUTATING_TEMPLATE, "</s>", 2048),
            spm,
        ),
        (
            Family(
                "template-broken",
                "llama",
                "llama-spm",
                BROKEN_TEMPLATE,
                "</s>",
                2048,
                expect_usable=False,
            ),
            spm,
        ),
    ]
    manifest = {}
    for fam, vocab in fams:
        manifest[fam.name] = write_family(fam, vocab, tmp)
        print(f"zoo: {fam.name}", file=sys.stderr)
    shutil.rmtree(tmp / "_src")
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
