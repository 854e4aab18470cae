"""The GGUF header reader: bounded, iterative, regular files only, one typed error."""

from __future__ import annotations

import os
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.models import gguf
from bastion.models.discovery import ModelSource, choose, describe, discover
from bastion.models.gguf import GGUFError, read_header
from tests.conftest import make_gguf

FUZZ = settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- a structure-aware GGUF writer -----------------------------------------------------------

_SCALAR_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?"}
_SCALAR_FMT |= {10: "<Q", 11: "<q", 12: "<d"}


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def encode_value(kind: int, value: Any) -> bytes:
    """The bytes of a value of GGUF type ``kind`` (arrays: (item_kind, items))."""
    if kind in _SCALAR_FMT:
        return struct.pack(_SCALAR_FMT[kind], value)
    if kind == 8:
        return _s(value)
    item_kind, items = value
    out = struct.pack("<IQ", item_kind, len(items))
    return out + b"".join(encode_value(item_kind, v) for v in items)


def encode_header(kvs: list[tuple[str, int, Any]], tensors: list[tuple[str, list[int]]]) -> bytes:
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)))
    for key, kind, value in kvs:
        out += _s(key) + struct.pack("<I", kind) + encode_value(kind, value)
    offset = 0
    for name, dims in tensors:
        out += (
            _s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        )
        out += struct.pack("<IQ", 0, offset)
        n = 1
        for d in dims:
            n *= d
        offset += -(-n * 4 // 32) * 32
    out += b"\0" * ((-len(out)) % 32)
    return bytes(out) + b"\0" * offset


_SCALAR_VALUES = {
    0: st.integers(0, 255),
    1: st.integers(-128, 127),
    2: st.integers(0, 2**16 - 1),
    3: st.integers(-(2**15), 2**15 - 1),
    4: st.integers(0, 2**32 - 1),
    5: st.integers(-(2**31), 2**31 - 1),
    6: st.floats(width=32, allow_nan=False),
    7: st.booleans(),
    10: st.integers(0, 2**64 - 1),
    11: st.integers(-(2**63), 2**63 - 1),
    12: st.floats(allow_nan=False),
}


def values(depth: int = 0) -> st.SearchStrategy[tuple[int, Any]]:
    """A (kind, value) pair; arrays nest up to a few levels."""
    leaf = st.one_of(
        *[st.tuples(st.just(k), v) for k, v in _SCALAR_VALUES.items()],
        st.tuples(st.just(8), st.text(max_size=20)),
    )
    if depth >= 3:
        return leaf

    def array(kind: int) -> st.SearchStrategy[tuple[int, Any]]:
        if kind == 9:
            inner = values(depth + 1).filter(lambda kv: kv[0] == 9)
            return st.tuples(
                st.just(9), st.tuples(st.just(9), st.lists(inner.map(lambda kv: kv[1]), max_size=3))
            )
        item = _SCALAR_VALUES.get(kind, st.text(max_size=8))
        return st.tuples(st.just(9), st.tuples(st.just(kind), st.lists(item, max_size=80)))

    kinds = st.sampled_from([*_SCALAR_VALUES, 8, 9])
    return st.one_of(leaf, kinds.flatmap(array))


headers = st.tuples(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=30), values()).map(lambda t: (t[0], *t[1])),
        max_size=8,
        unique_by=lambda t: t[0],
    ),
    st.lists(
        st.tuples(st.text(max_size=10), st.lists(st.integers(1, 8), min_size=1, max_size=3)),
        max_size=4,
    ),
)


@FUZZ
@given(headers)
def test_well_formed_headers_parse(tmp_path_factory: pytest.TempPathFactory, spec: Any) -> None:
    """Any well-formed header, nested arrays included, parses; nesting is reported."""
    kvs, tensors = spec
    path = tmp_path_factory.getbasetemp() / "wf.gguf"
    path.write_bytes(encode_header(kvs, tensors))
    header = read_header(path)
    assert header.tensor_count == len(tensors)
    assert set(header.metadata) == {k for k, _, _ in kvs}
    nested = any(kind == 9 and value[0] == 9 for _, kind, value in kvs)
    assert header.nested_arrays is nested


@FUZZ
@given(headers, st.data())
def test_mutated_headers_raise_only_gguf_error(
    tmp_path_factory: pytest.TempPathFactory, spec: Any, data: st.DataObject
) -> None:
    """Flipped bytes and truncations of a well-formed header give a header or GGUFError
    (one line), never another exception, a hang or a huge allocation."""
    blob = bytearray(encode_header(*spec))
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    path = tmp_path_factory.getbasetemp() / "mut.gguf"
    path.write_bytes(bytes(blob))
    try:
        read_header(path)
    except GGUFError as exc:
        assert "\n" not in str(exc)


def test_deep_nesting_is_bounded(tmp_path: Path) -> None:
    """Arrays nested deeper than the limit are refused without recursion."""
    # Array of array of ... of u32, by hand.
    body = struct.pack("<IQ", 4, 1) + struct.pack("<I", 1)
    for _ in range(gguf.MAX_DEPTH + 5):
        body = struct.pack("<IQ", 9, 1) + body
    blob = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _s("deep") + struct.pack("<I", 9) + body
    (tmp_path / "deep.gguf").write_bytes(blob)
    with pytest.raises(GGUFError, match="nested too deeply"):
        read_header(tmp_path / "deep.gguf")


def test_huge_counts_are_refused_quickly(tmp_path: Path) -> None:
    """A header claiming billions of entries or a gigantic string fails fast."""
    for blob in (
        b"GGUF" + struct.pack("<IQQ", 3, 0, 2**40),
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**50),
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _s("k") + struct.pack("<IIQ", 9, 8, 2**24),
    ):
        (tmp_path / "h.gguf").write_bytes(blob)
        start = time.monotonic()
        with pytest.raises(GGUFError):
            read_header(tmp_path / "h.gguf")
        assert time.monotonic() - start < 5


def test_fifo_and_device_are_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO named x.gguf and a symlink to /dev/zero are "not a regular file", at once."""
    fifo = tmp_path / "x.gguf"
    os.mkfifo(fifo)
    zero = tmp_path / "z.gguf"
    zero.symlink_to("/dev/zero")
    result: dict[str, str] = {}

    def probe() -> None:
        for p in (fifo, zero):
            try:
                read_header(p)
            except GGUFError as exc:
                result[p.name] = str(exc)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "reading a FIFO or /dev/zero blocked"
    assert result == {"x.gguf": "not a regular file", "z.gguf": "not a regular file"}
    found = {m.name: m for m in discover(None, tmp_path, include_other_tools=False)}
    assert not found["x"].usable and not found["z"].usable
    assert choose(list(found.values())).source is ModelSource.EMBEDDED


def test_nested_arrays_in_the_models_folder_do_not_break_anything(tmp_path: Path) -> None:
    """A GGUF with nested arrays is listed unusable with its reason; the default model is
    still chosen; `describe` never raises."""
    kvs = [
        ("general.architecture", 8, "llama"),
        ("general.name", 8, "nested"),
        ("weird", 9, (9, [(4, [1, 2]), (4, [3])])),
    ]
    path = tmp_path / "nested.gguf"
    path.write_bytes(encode_header(kvs, [("t", [4, 4])]))
    info = describe(path, ModelSource.USER)
    assert not info.usable and "nested arrays" in (info.reason or "")
    found = discover(None, tmp_path, include_other_tools=False)
    assert choose(found).source is ModelSource.EMBEDDED


def test_valid_file_still_reads(tmp_path: Path) -> None:
    """The small helper file reads as before (architecture, context)."""
    h = read_header(make_gguf(tmp_path / "ok.gguf"))
    assert h.architecture == "llama" and h.context_length == 256
