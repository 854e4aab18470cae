"""Vault commands: ``init``, ``passwd``, ``doctor``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from bastion.app import doctor, paths
from bastion.app.cli.common import (
    EXIT_ERROR,
    UsageError,
    add_passphrase_fd,
    open_vault,
    printable,
)
from bastion.app.secrets_input import PassphraseError, read_passphrase
from bastion.storage import crypto
from bastion.storage.vault import Vault, VaultError


def cmd_init(args: argparse.Namespace) -> int:
    folder = paths.vault_dir()
    if paths.vault_started(folder):
        raise VaultError(f"a vault already exists in {folder}")
    if args.passphrase_fd is None and not os.environ.get("BASTION_PASSPHRASE"):
        print(
            "Choose a passphrase. It cannot be recovered: if you forget it, the vault is lost.",
            file=sys.stderr,
        )
    pw = read_passphrase(fd=args.passphrase_fd, confirm=True)
    try:
        kdf = crypto.KdfParams(memory_kib=args.kdf_memory_mib * 1024, passes=args.kdf_passes)
        kdf.check()
    except ValueError as exc:
        raise UsageError(f"bastion init: {exc}") from None
    paths.ensure_private_dir(paths.data_dir())
    try:
        Vault.create(folder, pw, kdf).close()
    finally:
        crypto.wipe(pw)
    print(f"bastion: vault created in {folder}", file=sys.stderr)
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        new = read_passphrase(
            fd=args.new_passphrase_fd,
            env="BASTION_NEW_PASSPHRASE",
            prompt="New passphrase: ",
            confirm=True,
        )
        try:
            if args.rekey:
                vault.rekey(new)
            else:
                vault.change_passphrase(new)
        finally:
            crypto.wipe(new)
    if args.rekey:
        print(
            "bastion: passphrase changed and data key rotated: old headers and old "
            "passphrases open nothing written from now on",
            file=sys.stderr,
        )
    else:
        print("bastion: passphrase changed", file=sys.stderr)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:

    passphrase = None
    if paths.vault_exists():
        try:
            passphrase = read_passphrase(fd=args.passphrase_fd)
        except PassphraseError as exc:
            print(f"bastion: {exc}; vault checks skipped", file=sys.stderr)
    checks = doctor.run(passphrase)
    if passphrase is None and paths.vault_exists():
        checks.insert(1, doctor.Check("vault", doctor.WARN, "not unlocked: checks skipped"))
    if args.json:
        print(json.dumps([c.as_dict() for c in checks]))
    else:
        for c in checks:
            print(f"{c.status:4}  {c.name}: {printable(c.detail)}")
    return EXIT_ERROR if any(c.status == doctor.FAIL for c in checks) else 0


def add_parsers(sub: Any) -> None:
    """Register this family's commands."""
    p = sub.add_parser("init", help="create the encrypted vault")
    p.add_argument("--passphrase-fd", type=int, metavar="FD")
    p.add_argument("--kdf-memory-mib", type=int, default=64, metavar="MIB", help="Argon2id memory")
    p.add_argument("--kdf-passes", type=int, default=4, metavar="N", help="Argon2id passes")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("passwd", help="change the vault passphrase")
    add_passphrase_fd(p)
    p.add_argument("--new-passphrase-fd", type=int, metavar="FD")
    p.add_argument(
        "--rekey",
        action="store_true",
        help="also rotate the data key (re-encrypts the whole database): use it when an old "
        "copy of vault.hdr or the old passphrase may be known to someone",
    )
    p.set_defaults(func=cmd_passwd)

    p = sub.add_parser("doctor", help="check the vault, files, offline guard, models, disk")
    p.add_argument("--json", action="store_true")
    p.add_argument("--passphrase-fd", type=int, metavar="FD")
    p.set_defaults(func=cmd_doctor)
