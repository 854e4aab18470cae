"""Where Bastion keeps its files. Environment variables override them (tests use them)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from bastion.storage.vault import DB_NAME, HEADER_NAME

APP = "bastion"


def _dir(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value) if value else default


def data_dir() -> Path:
    """The vault and the user's models (``BASTION_DATA_DIR`` overrides)."""
    return _dir("BASTION_DATA_DIR", platformdirs.user_data_path(APP, appauthor=False))


def config_dir() -> Path:
    """Settings (``BASTION_CONFIG_DIR`` overrides)."""
    return _dir("BASTION_CONFIG_DIR", platformdirs.user_config_path(APP, appauthor=False))


def cache_dir() -> Path:
    """Model file hashes; never content (``BASTION_CACHE_DIR`` overrides)."""
    return _dir("BASTION_CACHE_DIR", platformdirs.user_cache_path(APP, appauthor=False))


def models_dir() -> Path:
    """The user's own GGUF files."""
    return data_dir() / "models"


def vault_dir() -> Path:
    """The vault's folder (``vault.hdr``, ``vault.db``, ``vault.lock``)."""
    return data_dir() / "vault"


def vault_exists(folder: Path | None = None) -> bool:
    """Whether ``folder`` (default: :func:`vault_dir`) holds a vault header."""
    return ((folder or vault_dir()) / HEADER_NAME).exists()


def vault_started(folder: Path | None = None) -> bool:
    """Whether ``folder`` holds a vault header or database (``init`` refuses both)."""
    folder = folder or vault_dir()
    return (folder / HEADER_NAME).exists() or (folder / DB_NAME).exists()


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 if missing."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
