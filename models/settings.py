"""Validated settings for loading a model and for sampling its answers."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field


def _default_threads() -> int:
    # llama-cpp-python's own default is cpu_count() // 2, which is 1 on a 2-core laptop and
    # costs ~40% of decode speed. Use every core the process may use.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class LoadSettings(BaseModel):
    """How a GGUF model is loaded into llama.cpp."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    n_ctx: int = Field(4096, ge=256, le=131072)
    """Context window in tokens: the prompt (history included) plus the answer must fit."""

    n_threads: int = Field(default_factory=_default_threads, ge=1, le=256)
    """CPU threads used for decoding and prompt processing."""

    n_batch: int = Field(512, ge=16, le=8192)
    """Tokens evaluated per llama.cpp batch during prompt processing."""

    flash_attn: bool = False
    """Flash attention: faster short prompts on CPU, slower decode at depth (FINDINGS.md)."""

    n_gpu_layers: int = Field(0, ge=-1, le=1000)
    """Layers offloaded to a GPU; 0 on CPU-only machines, -1 for all."""


class SamplingSettings(BaseModel):
    """How the next token is chosen, and how long an answer may be."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    """Randomness; 0 picks the most likely token every time (greedy, deterministic)."""

    top_p: float = Field(0.9, gt=0.0, le=1.0)
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p."""

    top_k: int = Field(40, ge=0, le=1000)
    """Keep only the k most likely tokens (0 keeps all)."""

    min_p: float = Field(0.05, ge=0.0, le=1.0)
    """Drop tokens less likely than min_p times the most likely one."""

    repeat_penalty: float = Field(1.1, ge=0.5, le=2.0)
    """Penalty for repeating recent tokens (1.0 is none)."""

    max_tokens: int = Field(512, ge=1, le=32768)
    """Longest answer in tokens."""

    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    """Random seed for sampling; the same seed and prompt give the same answer."""
