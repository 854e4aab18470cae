"""The core packages never import the UI."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ["app", "models", "storage"]


def core_modules() -> list[str]:
    mods = []
    for pkg in CORE:
        mods.append(pkg)
        for info in pkgutil.iter_modules([str(ROOT / pkg)]):
            mods.append(f"{pkg}.{info.name}")
    return mods


@pytest.mark.parametrize("module", core_modules())
def test_core_module_does_not_import_textual(module: str) -> None:
    """Importing a core module leaves textual and tui out of sys.modules."""
    code = (
        f"import {module}, sys; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'tui')]; "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, f"{module} imports {proc.stdout.strip()} {proc.stderr[-300:]}"


def test_only_storage_has_sql() -> None:
    """SQL statements live in storage/ only."""
    import re

    pattern = re.compile(r"\b(SELECT .* FROM|INSERT INTO|CREATE TABLE|DELETE FROM|PRAGMA )")
    offenders = []
    for pkg in ("app", "models", "tui"):
        for path in (ROOT / pkg).rglob("*.py"):
            if pattern.search(path.read_text()):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
