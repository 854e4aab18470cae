"""Read the header of a GGUF file (metadata and tensor table), never its weights.

The format is documented in ggml's `docs/gguf.md`: a magic, a version, the tensor and
key/value counts, the key/value pairs, then one entry per tensor (name, shape, type,
offset). Everything needed to describe a model sits in that header, so discovery reads a
few megabytes at most (the tokenizer vocabulary) whatever the file's size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

GGUF_MAGIC = b"GGUF"

# Value types of the key/value section.
_UINT8, _INT8, _UINT16, _INT16, _UINT32, _INT32, _FLOAT32, _BOOL = range(8)
_STRING, _ARRAY, _UINT64, _INT64, _FLOAT64 = range(8, 13)

_SCALARS: dict[int, struct.Struct] = {
    _UINT8: struct.Struct("<B"),
    _INT8: struct.Struct("<b"),
    _UINT16: struct.Struct("<H"),
    _INT16: struct.Struct("<h"),
    _UINT32: struct.Struct("<I"),
    _INT32: struct.Struct("<i"),
    _FLOAT32: struct.Struct("<f"),
    _BOOL: struct.Struct("<?"),
    _UINT64: struct.Struct("<Q"),
    _INT64: struct.Struct("<q"),
    _FLOAT64: struct.Struct("<d"),
}

# `general.file_type` values (llama.cpp `enum llama_ftype`).
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4",
}

# ggml tensor types, used when a file has no `general.file_type`.
TENSOR_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    6: "Q5_0",
    7: "Q5_1",
    8: "Q8_0",
    9: "Q8_1",
    10: "Q2_K",
    11: "Q3_K",
    12: "Q4_K",
    13: "Q5_K",
    14: "Q6_K",
    15: "Q8_K",
    30: "BF16",
}

# (elements per block, bytes per block) of ggml tensor types, to know where the data ends.
_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4),
    1: (1, 2),
    30: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
}

# Sanity bounds: a corrupt header must not make us allocate gigabytes.
_MAX_STRING = 64 * 1024 * 1024
_MAX_COUNT = 1 << 24
_MAX_DIMS = 8
# Arrays longer than this (tokenizer vocabularies) are skipped rather than kept.
_KEEP_ARRAY = 64


class GGUFError(Exception):
    """The file is not a readable GGUF file; the message says why, in one line."""


@dataclass
class GGUFHeader:
    """What the header of a GGUF file says about the model."""

    version: int
    metadata: dict[str, Any]
    tensor_count: int
    parameter_count: int
    tensor_types: dict[str, int] = field(default_factory=dict)

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    @property
    def name(self) -> str | None:
        value = self.metadata.get("general.name")
        return value if isinstance(value, str) else None

    @property
    def size_label(self) -> str | None:
        value = self.metadata.get("general.size_label")
        return value if isinstance(value, str) else None

    @property
    def context_length(self) -> int | None:
        arch = self.architecture
        value = self.metadata.get(f"{arch}.context_length") if arch else None
        return int(value) if isinstance(value, int) else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def quantization(self) -> str | None:
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, int):
            return FILE_TYPES.get(file_type, f"type {file_type}")
        if self.tensor_types:
            # The most common weight type is what people call the quantization.
            return max(self.tensor_types.items(), key=lambda kv: kv[1])[0]
        return None


class _Reader:
    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise GGUFError("truncated header")
        return data

    def scalar(self, kind: int) -> Any:
        st = _SCALARS[kind]
        return st.unpack(self.read(st.size))[0]

    def u32(self) -> int:
        return int(self.scalar(_UINT32))

    def u64(self) -> int:
        return int(self.scalar(_UINT64))

    def string(self) -> str:
        n = self.u64()
        if n > _MAX_STRING:
            raise GGUFError("implausible string length in header")
        return self.read(n).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.u64()
        if n > _MAX_STRING:
            raise GGUFError("implausible string length in header")
        self.fh.seek(n, 1)

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(kind)
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind = self.u32()
            count = self.u64()
            if count > _MAX_COUNT:
                raise GGUFError("implausible array length in header")
            if count > _KEEP_ARRAY:
                self._skip_array(item_kind, count)
                return _SkippedArray(count)
            return [self.value(item_kind) for _ in range(count)]
        raise GGUFError(f"unknown value type {kind} in header")

    def _skip_array(self, kind: int, count: int) -> None:
        if kind in _SCALARS:
            self.fh.seek(_SCALARS[kind].size * count, 1)
        elif kind == _STRING:
            for _ in range(count):
                self.skip_string()
        else:
            for _ in range(count):
                self.value(kind)


@dataclass(frozen=True)
class _SkippedArray:
    """Stands for a long array (a vocabulary) that was skipped, keeping its length."""

    length: int


def read_header(path: str | Path) -> GGUFHeader:
    """Read the GGUF header of ``path``.

    Raises:
        GGUFError: the file is not GGUF, is truncated, or its header is malformed.
        OSError: the file cannot be opened or read.
    """
    with open(path, "rb") as fh:
        r = _Reader(fh)
        if fh.read(4) != GGUF_MAGIC:
            raise GGUFError("not a GGUF file (bad magic)")
        version = r.u32()
        if version not in (2, 3):
            raise GGUFError(f"unsupported GGUF version {version}")
        tensor_count = r.u64()
        kv_count = r.u64()
        if tensor_count > _MAX_COUNT or kv_count > _MAX_COUNT:
            raise GGUFError("implausible counts in header")
        metadata: dict[str, Any] = {}
        for _ in range(kv_count):
            key = r.string()
            metadata[key] = r.value(r.u32())
        params = 0
        types: dict[str, int] = {}
        data_end = 0  # bytes of tensor data the header promises, where the types are known
        for _ in range(tensor_count):
            r.skip_string()
            n_dims = r.u32()
            if n_dims > _MAX_DIMS:
                raise GGUFError("implausible tensor shape in header")
            n = 1
            for _ in range(n_dims):
                n *= r.u64()
            ttype = r.u32()
            offset = r.u64()
            params += n
            if ttype in _TYPE_SIZES:
                per_block, block_bytes = _TYPE_SIZES[ttype]
                data_end = max(data_end, offset + -(-n // per_block) * block_bytes)
            type_name = TENSOR_TYPES.get(ttype, f"type {ttype}")
            if n_dims >= 2:  # weight matrices; norms and biases stay F32
                types[type_name] = types.get(type_name, 0) + n
        alignment = metadata.get("general.alignment", 32)
        data_start = fh.tell()
        if isinstance(alignment, int) and alignment > 0:
            data_start += (-data_start) % alignment
        fh.seek(0, 2)
        if tensor_count and fh.tell() < data_start + max(data_end, 1):
            raise GGUFError(
                f"truncated file: {fh.tell()} bytes, the header promises {data_start + data_end}"
            )
    return GGUFHeader(
        version=version,
        metadata=metadata,
        tensor_count=tensor_count,
        parameter_count=params,
        tensor_types=types,
    )


def format_params(n: int) -> str:
    """Format a parameter count the way model cards do: 135M, 1.7B."""
    if n >= 1_000_000_000:
        return f"{n / 1e9:.1f}B".replace(".0B", "B")
    if n >= 1_000_000:
        return f"{n / 1e6:.0f}M"
    return f"{n / 1e3:.0f}K"
