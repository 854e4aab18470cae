"""Read the header of a GGUF file (metadata and tensor table), never its weights.

The format is documented in ggml's `docs/gguf.md`: a magic, a version, the tensor and
key/value counts, the key/value pairs, then one entry per tensor (name, shape, type,
offset). Everything needed to describe a model sits in that header, so discovery reads a
few megabytes at most (the tokenizer vocabulary) whatever the file's size.
"""

from __future__ import annotations

import os
import stat
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

# Bounds: a corrupt or hostile header must not make us allocate gigabytes, recurse, or loop
# for minutes. Real files stay far below them (a 262k-token vocabulary, a 100 KB template).
MAX_KEY = 64 * 1024
"""Longest key name."""
MAX_STRING = 16 * 1024 * 1024
"""Longest string value (a chat template)."""
MAX_COUNT = 1 << 24
"""Most key/value pairs, tensors, or elements of one array."""
MAX_ITEMS = 1 << 23
"""Most array elements read or skipped in the whole header (vocabularies, merges)."""
MAX_DEPTH = 8
"""Deepest nesting of arrays (llama.cpp itself accepts none)."""
MAX_DIMS = 8
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
    data_bytes: int = 0
    """Bytes of tensor data the header describes (the weights' size in memory)."""
    nested_arrays: bool = False
    """Some metadata value is an array of arrays (valid GGUF, but llama.cpp refuses it)."""

    def _int(self, key: str) -> int | None:
        arch = self.architecture
        value = self.metadata.get(f"{arch}.{key}") if arch else None
        if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            return max(int(v) for v in value)  # per-layer values: the largest
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

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
        return self._int("context_length")

    @property
    def block_count(self) -> int | None:
        return self._int("block_count")

    @property
    def embedding_length(self) -> int | None:
        return self._int("embedding_length")

    @property
    def head_count(self) -> int | None:
        return self._int("attention.head_count")

    @property
    def head_count_kv(self) -> int | None:
        return self._int("attention.head_count_kv") or self.head_count

    @property
    def key_length(self) -> int | None:
        n, h = self.embedding_length, self.head_count
        return self._int("attention.key_length") or (n // h if n and h else None)

    @property
    def value_length(self) -> int | None:
        return self._int("attention.value_length") or self.key_length

    @property
    def sliding_window(self) -> int | None:
        return self._int("attention.sliding_window")

    @property
    def vocab_size(self) -> int | None:
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        if isinstance(tokens, SkippedArray):
            return tokens.length
        return len(tokens) if isinstance(tokens, list) else None

    @property
    def split_no(self) -> int:
        value = self.metadata.get("split.no")
        return int(value) if isinstance(value, int) else 0

    @property
    def split_count(self) -> int:
        value = self.metadata.get("split.count")
        return int(value) if isinstance(value, int) else 1

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


@dataclass(frozen=True)
class SkippedArray:
    """Stands for a long array (a vocabulary) that was skipped, keeping its length."""

    length: int


class _Reader:
    """Reads the header through a buffer, never past ``size`` bytes, within the bounds."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh = fh
        self.size = size
        self.items = 0

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise GGUFError("truncated header")
        return data

    def skip(self, n: int) -> None:
        pos = self.fh.tell() + n
        if pos > self.size:
            raise GGUFError("truncated header")
        self.fh.seek(pos)

    def scalar(self, kind: int) -> Any:
        st = _SCALARS[kind]
        return st.unpack(self.read(st.size))[0]

    def u32(self) -> int:
        return int(self.scalar(_UINT32))

    def u64(self) -> int:
        return int(self.scalar(_UINT64))

    def length(self, limit: int, what: str) -> int:
        n = self.u64()
        if n > limit:
            raise GGUFError(f"implausible {what} length in header")
        if self.fh.tell() + n > self.size:
            raise GGUFError("truncated header")
        return n

    def string(self, limit: int = MAX_STRING) -> str:
        n = self.length(limit, "string")
        return self.read(n).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        self.skip(self.length(MAX_STRING, "string"))

    def skip_strings(self, n: int) -> None:
        """Skip ``n`` strings in one pass over a buffer (a vocabulary, merges: fast)."""
        unpack = _SCALARS[_UINT64].unpack_from
        pos = self.fh.tell()  # file offset of buf[0]
        buf = b""
        off = 0
        for _ in range(n):
            if off + 8 > len(buf):
                pos += off
                self.fh.seek(pos)
                buf = self.fh.read(1 << 20)
                off = 0
                if len(buf) < 8:
                    raise GGUFError("truncated header")
            (length,) = unpack(buf, off)
            if length > MAX_STRING:
                raise GGUFError("implausible string length in header")
            off += 8 + length
        end = pos + off
        if end > self.size:
            raise GGUFError("truncated header")
        self.fh.seek(end)

    def count(self, n: int) -> None:
        self.items += n
        if self.items > MAX_ITEMS:
            raise GGUFError("header has too many array elements")

    def value(self, kind: int) -> tuple[Any, bool]:
        """One value of type ``kind``; arrays of arrays are walked with an explicit stack, not
        recursion. Returns the value and whether it held nested arrays."""
        if kind in _SCALARS:
            return self.scalar(kind), False
        if kind == _STRING:
            return self.string(), False
        if kind != _ARRAY:
            raise GGUFError(f"unknown value type {kind} in header")
        nested_seen: list[bool] = []
        # Frames: [the list being filled (None when skipping), element type, elements left].
        stack: list[list[Any]] = []

        def begin(keep: bool) -> Any:
            item_kind = self.u32()
            n = self.u64()
            if n > MAX_COUNT:
                raise GGUFError("implausible array length in header")
            if len(stack) >= MAX_DEPTH:
                raise GGUFError("arrays nested too deeply in header")
            self.count(n)
            keep = keep and n <= _KEEP_ARRAY
            if item_kind in _SCALARS:
                if keep:
                    return [self.scalar(item_kind) for _ in range(n)]
                self.skip(_SCALARS[item_kind].size * n)
                return SkippedArray(n)
            if item_kind not in (_STRING, _ARRAY):
                raise GGUFError(f"unknown value type {item_kind} in header")
            if item_kind == _ARRAY:
                nested_seen.append(True)
            out: list[Any] | None = [] if keep else None
            stack.append([out, item_kind, n])
            return out if out is not None else SkippedArray(n)

        top = begin(True)
        while stack:
            frame = stack[-1]
            out, item_kind, left = frame
            if left == 0:
                stack.pop()
                continue
            frame[2] = left - 1
            if item_kind == _STRING:
                if out is None:
                    frame[2] = 0
                    self.skip_strings(left)
                else:
                    out.append(self.string())
            else:
                child = begin(out is not None)
                if out is not None:
                    out.append(child)
        return top, bool(nested_seen)


def open_regular(path: str | Path) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file, checked on the opened file
    descriptor (no race with a swap): a FIFO named ``x.gguf`` must not block, a symlink to
    ``/dev/zero`` must not read forever.

    Raises:
        GGUFError: not a regular file.
        OSError: the file cannot be opened.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise GGUFError("not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=1 << 16)
    except BaseException:
        os.close(fd)
        raise


def read_header(path: str | Path) -> GGUFHeader:
    """Read the GGUF header of ``path``, bounded in size, counts, nesting and time.

    Raises:
        GGUFError: the file is not a regular GGUF file, is truncated, or its header is
            malformed or implausible (the message is one line).
        OSError: the file cannot be opened or read.
    """
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        r = _Reader(fh, size)
        if fh.read(4) != GGUF_MAGIC:
            raise GGUFError("not a GGUF file (bad magic)")
        version = r.u32()
        if version not in (2, 3):
            raise GGUFError(f"unsupported GGUF version {version}")
        tensor_count = r.u64()
        kv_count = r.u64()
        if tensor_count > MAX_COUNT or kv_count > MAX_COUNT:
            raise GGUFError("implausible counts in header")
        metadata: dict[str, Any] = {}
        nested = False
        for _ in range(kv_count):
            key = r.string(MAX_KEY)
            metadata[key], deep = r.value(r.u32())
            nested = nested or deep
        params = 0
        types: dict[str, int] = {}
        data_end = 0  # bytes of tensor data the header promises, where the types are known
        data_bytes = 0
        for _ in range(tensor_count):
            r.string(MAX_KEY)
            n_dims = r.u32()
            if n_dims > MAX_DIMS:
                raise GGUFError("implausible tensor shape in header")
            n = 1
            for _ in range(n_dims):
                n *= r.u64()
            if n > 1 << 48:
                raise GGUFError("implausible tensor shape in header")
            ttype = r.u32()
            offset = r.u64()
            params += n
            if ttype in _TYPE_SIZES:
                per_block, block_bytes = _TYPE_SIZES[ttype]
                nbytes = -(-n // per_block) * block_bytes
                data_bytes += nbytes
                data_end = max(data_end, offset + nbytes)
            type_name = TENSOR_TYPES.get(ttype, f"type {ttype}")
            if n_dims >= 2:  # weight matrices; norms and biases stay F32
                types[type_name] = types.get(type_name, 0) + n
        alignment = metadata.get("general.alignment", 32)
        data_start = fh.tell()
        if isinstance(alignment, int) and alignment > 0:
            data_start += (-data_start) % alignment
        if tensor_count and size < data_start + max(data_end, 1):
            raise GGUFError(
                f"truncated file: {size} bytes, the header promises {data_start + data_end}"
            )
    if not data_bytes and tensor_count:
        data_bytes = max(size - data_start, 0)
    return GGUFHeader(
        version=version,
        metadata=metadata,
        tensor_count=tensor_count,
        parameter_count=params,
        tensor_types=types,
        data_bytes=data_bytes,
        nested_arrays=nested,
    )


def format_params(n: int) -> str:
    """Format a parameter count the way model cards do: 135M, 1.7B."""
    if n >= 1_000_000_000:
        return f"{n / 1e9:.1f}B".replace(".0B", "B")
    if n >= 1_000_000:
        return f"{n / 1e6:.0f}M"
    return f"{n / 1e3:.0f}K"
