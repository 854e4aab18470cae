"""Where Bastion keeps its files. Environment variables override them (tests use them)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import platformdirs

from bastion.storage.vault import DB_NAME, HEADER_NAME

APP = "bastion"
DEFAULT_VAULT = "default"
VAULT_ENV = "BASTION_VAULT"
_VAULT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_selected: str | None = None


class VaultNameError(ValueError):
    """Not a usable vault name."""


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


def select_vault(name: str | None) -> None:
    """Make ``name`` the vault of this process (the CLI's ``--vault``); None: back to
    ``$BASTION_VAULT`` or the default one."""
    global _selected
    _selected = check_vault_name(name) if name is not None else None


def check_vault_name(name: str) -> str:
    """``name`` if it can name a vault: 1-64 letters, digits, ``.``, ``_``, ``-``, starting
    with a letter or digit.

    Raises:
        VaultNameError: it cannot.
    """
    if not _VAULT_NAME.fullmatch(name):
        raise VaultNameError(
            f"bad vault name {name[:70]!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def vault_name(name: str | None = None) -> str:
    """The vault meant: ``name``, else the one selected (``--vault``), else
    ``$BASTION_VAULT``, else ``default``."""
    return check_vault_name(name or _selected or os.environ.get(VAULT_ENV) or DEFAULT_VAULT)


def vault_dir(name: str | None = None) -> Path:
    """The folder of a vault (``vault.hdr``, ``vault.db``, ``vault.lock``): the one place
    it is derived. ``default`` lives in ``<data>/vault`` (where single-vault versions kept
    it), every other name in ``<data>/vaults/NAME``.

    A vault's name is its folder's name, visible to anyone who sees the disk: a code
    ("client-017") is safer than a client's name.
    """
    chosen = vault_name(name)
    if chosen == DEFAULT_VAULT:
        return data_dir() / "vault"
    return data_dir() / "vaults" / chosen


def vault_names() -> list[str]:
    """The vaults that exist (a header or a database in their folder), ``default`` first."""
    names = [DEFAULT_VAULT] if vault_started(vault_dir(DEFAULT_VAULT)) else []
    parent = data_dir() / "vaults"
    if parent.is_dir():
        for entry in sorted(parent.iterdir(), key=lambda p: p.name):
            if (
                entry.is_dir()
                and not entry.is_symlink()
                and _VAULT_NAME.fullmatch(entry.name)
                and entry.name != DEFAULT_VAULT
                and vault_started(entry)
            ):
                names.append(entry.name)
    return names


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
