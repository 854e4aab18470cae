"""How much memory a model needs, estimated from its GGUF header before loading it.

The estimate is what the process keeps resident once the context is full: the weights (the
tensor data, memory-mapped and all touched by a forward pass), the KV cache (llama.cpp clears
it at creation, so all of it is resident: layers x context x KV heads x (key + value size) x
2 bytes for f16), the part of the compute buffer a full-context prompt batch touches (the
attention scores of one batch against the whole cache dominate), the vocabulary's tables,
and a fixed runtime overhead. ``bench/memory.py`` compares it with the measured resident
memory of real models at several context sizes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

KV_BYTES = {"f16": 2.0, "bf16": 2.0, "f32": 4.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
"""Bytes per cached element by KV cache type."""
RUNTIME_OVERHEAD = 24 * 1024 * 1024
"""Thread pool, graph metadata and allocator slack of one loaded model (measured)."""
PER_TOKEN_OF_VOCAB = 160
"""Bytes llama.cpp keeps per vocabulary entry (text, scores, lookup maps; measured)."""
MIN_CONTEXT = 256


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs from a header; ``None`` where the header does not say."""

    weights_bytes: int
    n_layer: int | None = None
    n_embd: int | None = None
    n_head: int | None = None
    n_head_kv: int | None = None
    key_length: int | None = None
    value_length: int | None = None
    n_vocab: int | None = None
    n_ff: int | None = None


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed to run a model at ``n_ctx`` tokens of context."""

    n_ctx: int
    weights: int
    kv_cache: int
    compute: int
    other: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.other


def kv_bytes_per_token(shape: ModelShape, cache_type: str = "f16") -> float:
    """KV cache bytes per token of context (all layers)."""
    if not (shape.n_layer and shape.n_head_kv and shape.key_length):
        return 0.0
    per_layer = shape.n_head_kv * (shape.key_length + (shape.value_length or shape.key_length))
    return shape.n_layer * per_layer * KV_BYTES.get(cache_type, 2.0)


def estimate(
    shape: ModelShape, n_ctx: int, n_batch: int = 512, cache_type: str = "f16"
) -> MemoryEstimate:
    """Estimate the resident memory of ``shape`` loaded with ``n_ctx`` and ``n_batch``."""
    n_ctx = max(n_ctx, MIN_CONTEXT)
    kv = int(kv_bytes_per_token(shape, cache_type) * n_ctx)
    n_head = shape.n_head or 1
    n_embd = shape.n_embd or 0
    n_ff = shape.n_ff or 4 * n_embd
    vocab = shape.n_vocab or 0
    # One batch of prompt tokens against a full cache: the attention scores (f32), the
    # activations of the batch, and the logits of its last token.
    compute = 4 * n_batch * (n_head * n_ctx + 6 * n_embd + 2 * n_ff) + 4 * vocab
    other = RUNTIME_OVERHEAD + PER_TOKEN_OF_VOCAB * vocab
    return MemoryEstimate(
        n_ctx=n_ctx, weights=shape.weights_bytes, kv_cache=kv, compute=compute, other=other
    )


def largest_context(
    shape: ModelShape, budget: int, wanted: int, n_batch: int = 512, cache_type: str = "f16"
) -> int | None:
    """The largest context up to ``wanted`` (a multiple of 256) whose estimate fits
    ``budget`` bytes, or None when not even the smallest does."""
    n = max(wanted, MIN_CONTEXT)
    while n >= MIN_CONTEXT:
        if estimate(shape, n, n_batch, cache_type).total <= budget:
            return n
        if n == MIN_CONTEXT:
            break
        n = max(MIN_CONTEXT, (n // 2) // 256 * 256)
    return None


def available_memory() -> int | None:
    """Memory this process may still use: ``MemAvailable`` of /proc/meminfo, capped by a
    cgroup limit if one is set. None when the system does not say."""
    avail: int | None = None
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh.read(64 * 1024).decode("ascii", "replace").splitlines():
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        avail = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, "rb") as fh:
                raw = fh.read(64).decode("ascii", "replace").strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:
            used = _cgroup_usage()
            room = int(raw) - used if used is not None else int(raw)
            avail = room if avail is None else min(avail, room)
        break
    override = os.environ.get("BASTION_MEMORY_LIMIT_MB")
    if override and override.isdigit():
        avail = int(override) * 1024 * 1024
    return avail


def _cgroup_usage() -> int | None:
    for path in ("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes"):
        try:
            with open(path, "rb") as fh:
                raw = fh.read(64).decode("ascii", "replace").strip()
        except OSError:
            continue
        if raw.isdigit():
            return int(raw)
    return None


def format_bytes(n: int) -> str:
    """``1.2 GB``, ``340 MB``."""
    if n >= 1000**3:
        return f"{n / 1000**3:.1f} GB"
    return f"{n / 1000**2:.0f} MB"
