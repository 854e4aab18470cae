"""Regenerate schemas/pack.schema.json from the pack model: python scripts/pack_schema.py"""

from __future__ import annotations

from pathlib import Path

from bastion.app.packs import json_schema_text

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "schemas" / "pack.schema.json"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(json_schema_text())
    print(f"wrote {SCHEMA_PATH.relative_to(ROOT)}")
