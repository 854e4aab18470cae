"""The packs shipped with Bastion."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from bastion.app.packs.base import PackError
from bastion.app.packs.format import Pack
from bastion.app.packs.loader import load

BUILTIN_SIGNER = "built-in"


def builtin_ids() -> list[str]:
    root = resources.files("bastion.app") / "builtin_packs"
    return sorted(p.name for p in root.iterdir() if (p / "pack.toml").is_file())


def builtin_path(pack_id: str) -> Path:
    return Path(str(resources.files("bastion.app") / "builtin_packs" / pack_id))


_LOADED: dict[str, Pack] = {}


def builtin(pack_id: str) -> Pack:
    """A pack shipped with Bastion (validated like any other; loaded once per process, so
    the object is shared: do not change it)."""
    if pack_id not in builtin_ids():
        raise PackError([f"no built-in pack {pack_id!r}"])
    if pack_id not in _LOADED:
        _LOADED[pack_id] = load(builtin_path(pack_id))
    return _LOADED[pack_id]


_TOML: dict[str, str] = {}


def builtin_toml(pack_id: str) -> str:
    """The built-in pack as the vault stores it (one self-contained TOML), computed once."""
    if pack_id not in _TOML:
        _TOML[pack_id] = builtin(pack_id).to_toml()
    return _TOML[pack_id]
