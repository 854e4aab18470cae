"""Regenerate a golden vault: `python tests/data/make_golden.py tests/data/vault-vN`.

Run once per released format version and commit the result; never regenerate an old one.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


from bastion.storage.crypto import KdfParams
from bastion.storage.vault import Vault

PASSPHRASE = "golden vault passphrase v1"


def main(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    with Vault.create(out, PASSPHRASE, KdfParams(memory_kib=8 * 1024, passes=1)) as v:
        c = v.store.create_conversation("Héllo golden ✓")
        v.store.add_message(c.id, "system", "You are terse.", pinned=True)
        v.store.add_message(c.id, "user", "What is the boiling point of water?")
        v.store.add_message(c.id, "assistant", "100 °C at sea level.", stats={"generated": 7})
        v.store.set_setting("theme", "dark")
        v.store.save_pack("demo", "1.0.0", "Demo", 'id = "demo"\n', None)
        thread = [m.content for m in v.store.thread(c.id)]
    (out / "vault.lock").unlink()
    (out / "passphrase.txt").write_text(PASSPHRASE + "\n")
    (out / "expected.json").write_text(
        json.dumps(
            {"titles": ["Héllo golden ✓"], "first_thread": thread, "search": "boiling"},
            ensure_ascii=False,
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
