"""Regenerate schemas/pack.schema.json from the pack model: python scripts/pack_schema.py"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.packs import json_schema  # noqa: E402

SCHEMA_PATH = ROOT / "schemas" / "pack.schema.json"


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(render())
    print(f"wrote {SCHEMA_PATH.relative_to(ROOT)}")
