"""Where Bastion keeps its files. Environment variables override them (tests use them)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

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


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 if missing."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
