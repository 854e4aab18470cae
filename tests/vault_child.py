"""A child process for crash tests: `python -m tests.vault_child MODE FOLDER [ARGS]`.

commits: add messages forever, printing each message's number after its commit returns.
passwd:  flip the passphrase between A and B forever, printing which one is now in force.
rekey:   add a message, then rekey (new data key) flipping the passphrase between A and B,
         forever, printing which passphrase is now in force.
export:  write an encrypted export to the same file forever, printing after each.
fill:    set a file-size limit, then write until the disk is "full"; print the error line.
"""

from __future__ import annotations

import resource
import signal
import sys
from pathlib import Path

from bastion.storage.crypto import KdfParams
from bastion.storage.store import StoreError
from bastion.storage.vault import Vault

FAST = KdfParams(memory_kib=8 * 1024, passes=1)


def main() -> None:
    mode, folder = sys.argv[1], Path(sys.argv[2])
    if mode == "commits":
        canary = sys.argv[3] if len(sys.argv) > 3 else "row"
        v = Vault.open(folder, "A")
        c = v.store.create_conversation(f"crash {canary}")
        i = 0
        while True:
            v.store.add_message(c.id, "user", f"{canary} {i}")
            print(i, flush=True)
            i += 1
    elif mode == "passwd":
        v = Vault.open(folder, "A")
        current = "A"
        while True:
            nxt = "B" if current == "A" else "A"
            v.change_passphrase(nxt, FAST)
            current = nxt
            print(current, flush=True)
    elif mode == "rekey":
        v = Vault.open(folder, "A")
        c = v.store.create_conversation("rekey")
        current = "A"
        while True:
            v.store.add_message(c.id, "user", f"under {current}")
            nxt = "B" if current == "A" else "A"
            v.rekey(nxt, FAST)
            current = nxt
            print(current, flush=True)
    elif mode == "export":
        from bastion.storage import export as fmt

        out = Path(sys.argv[3])
        identity = fmt.parse_identity(Path(sys.argv[4]).read_text())
        payload = ("export body " * 200_000).encode()
        while True:
            fmt.write_encrypted(out, fmt.encrypt(payload, recipients=[identity.to_public()]))
            print("written", flush=True)
    elif mode == "fill":
        v = Vault.open(folder, "A")
        c = v.store.create_conversation("fill")
        for i in range(5):
            v.store.add_message(c.id, "user", f"before {i}")
        v.store.purge()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = (folder / "vault.db").stat().st_size + 64 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        try:
            for i in range(100000):
                v.store.add_message(c.id, "user", "x" * 4000 + str(i))
        except StoreError as exc:
            print(f"ERROR {exc}", flush=True)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        v.close()


if __name__ == "__main__":
    main()
