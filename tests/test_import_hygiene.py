"""One import package, `bastion`, whose core never imports the UI."""

from __future__ import annotations

import importlib.metadata
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bastion

ROOT = Path(__file__).resolve().parent.parent
CORE = ["bastion.app", "bastion.models", "bastion.storage"]


def core_modules() -> list[str]:
    mods = []
    for pkg in CORE:
        module = __import__(pkg, fromlist=["_"])
        mods.append(pkg)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{pkg}."):
            mods.append(info.name)
    return mods


@pytest.mark.parametrize("module", core_modules())
def test_core_module_does_not_import_textual(module: str, tmp_path: Path) -> None:
    """Importing a core module leaves textual and bastion.tui out of sys.modules."""
    code = (
        f"import {module}, sys; "
        "bad = [m for m in sys.modules if m.split('.')[0] == 'textual' "
        "or m.startswith('bastion.tui')]; "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, f"{module} imports {proc.stdout.strip()} {proc.stderr[-300:]}"


def test_only_storage_has_sql() -> None:
    """SQL statements live in storage/ only."""
    pattern = re.compile(r"\b(SELECT .* FROM|INSERT INTO|CREATE TABLE|DELETE FROM|PRAGMA )")
    offenders = []
    for pkg in ("app", "models", "tui"):
        for path in (ROOT / pkg).rglob("*.py"):
            if pattern.search(path.read_text()):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_distribution_installs_one_top_level_name() -> None:
    """The installed distribution exposes exactly one import name, `bastion`."""
    dist = importlib.metadata.distribution("bastion")
    files = [str(f) for f in dist.files or []]
    # An editable install lists a .pth (or finder) instead of the package files.
    names = {f.split("/")[0] for f in files if not f.startswith(("bastion-", "__editable__", ".."))}
    names = {n.removesuffix(".py") for n in names if not n.endswith(".pth")}
    top_level = importlib.metadata.packages_distributions()
    mine = sorted(name for name, dists in top_level.items() if "bastion" in dists)
    assert mine == ["bastion"], mine
    assert names <= {"bastion"}, names


@pytest.mark.parametrize("old", ["app", "models", "storage", "tui"])
def test_old_top_level_names_are_gone(old: str, tmp_path: Path) -> None:
    """Outside the checkout, `import app` (or models, storage, tui) fails; bastion.X works."""
    code = "\n".join(
        [
            f"import bastion.{old}",
            "try:",
            f"    import {old}",
            "except ImportError:",
            "    pass",
            "else:",
            f"    raise SystemExit('{old} importable')",
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-500:] + proc.stdout


def test_version_comes_from_the_distribution() -> None:
    """The version is declared once, in pyproject.toml."""
    assert bastion.__version__ == importlib.metadata.version("bastion")
