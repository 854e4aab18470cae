"""Vault commands: ``init``, ``passwd``, ``recover``, ``recovery-key``, ``doctor``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from bastion.app import audit, doctor, paths
from bastion.app.cli.common import (
    EXIT_ERROR,
    UsageError,
    add_passphrase_fd,
    missing_vault,
    open_vault,
    printable,
)
from bastion.app.secrets_input import PassphraseError, check_strength, read_passphrase
from bastion.storage import crypto, recovery_key
from bastion.storage.vault import Vault, VaultError

RECOVERY_WARNING = (
    "Write it down now and keep it somewhere safe, away from this computer. If you forget\n"
    "your passphrase, it is the only way into this vault (`bastion recover`); anyone who has\n"
    "it can open the vault. It is stored nowhere in readable form and will not be shown again."
)


def show_recovery_key(key: str) -> None:
    """Print a new recovery key once, under a heading, with what it is for (stdout)."""
    print("=" * 20 + " RECOVERY KEY (shown once) " + "=" * 20)
    print()
    print(f"    {key}")
    print()
    print(RECOVERY_WARNING)
    print("=" * 67)


def read_new_passphrase(args: argparse.Namespace, *, fd: int | None, env: str) -> bytearray:
    """A new passphrase (asked twice at a terminal), refused if zxcvbn scores it below 2
    unless ``--weak-passphrase``."""
    pw = read_passphrase(fd=fd, env=env, prompt="New passphrase: ", confirm=True)
    try:
        verdict = check_strength(pw, allow_weak=args.weak_passphrase)
    except PassphraseError:
        crypto.wipe(pw)
        raise
    if not verdict.acceptable:
        print(f"bastion: warning: weak passphrase kept: {verdict.describe()}", file=sys.stderr)
    return pw


def kdf_params(args: argparse.Namespace) -> crypto.KdfParams:
    try:
        kdf = crypto.KdfParams(memory_kib=args.kdf_memory_mib * 1024, passes=args.kdf_passes)
        kdf.check()
    except ValueError as exc:
        raise UsageError(f"bastion {args.command}: {exc}") from None
    return kdf


def create_vault(args: argparse.Namespace, name: str | None = None) -> int:
    """Create the vault ``name`` (default: the chosen one) and show its recovery key once."""
    folder = paths.vault_dir(name)
    if paths.vault_started(folder):
        raise VaultError(f"a vault already exists in {folder}")
    kdf = kdf_params(args)
    if args.passphrase_fd is None and not os.environ.get("BASTION_PASSPHRASE"):
        print(
            "Choose a passphrase (four or more random words are strong and easy to type).",
            file=sys.stderr,
        )
    pw = read_new_passphrase(args, fd=args.passphrase_fd, env="BASTION_PASSPHRASE")
    paths.ensure_private_dir(folder.parent)
    try:
        vault = Vault.create(folder, pw, kdf)
    finally:
        crypto.wipe(pw)
    try:
        audit.record(vault.store, "vault.create", recovery_key=True)
        audit.record(vault.store, "lock", via=f"cli:{args.command}")
        key = vault.new_recovery_key
        vault.new_recovery_key = None
    finally:
        vault.close()
    print(f"bastion: vault created in {folder}", file=sys.stderr)
    if key:
        show_recovery_key(key)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    return create_vault(args)


def cmd_passwd(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        new = read_new_passphrase(args, fd=args.new_passphrase_fd, env="BASTION_NEW_PASSPHRASE")
        try:
            if args.rekey:
                vault.rekey(new)
            else:
                vault.change_passphrase(new)
        finally:
            crypto.wipe(new)
        audit.record(vault.store, "rekey" if args.rekey else "passwd")
    if args.rekey:
        print(
            "bastion: passphrase changed and data key rotated: old headers and old "
            "passphrases open nothing written from now on",
            file=sys.stderr,
        )
    else:
        print("bastion: passphrase changed", file=sys.stderr)
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    folder = paths.vault_dir()
    if not paths.vault_exists(folder):
        raise missing_vault(folder)
    typed = read_passphrase(
        fd=args.recovery_key_fd, env="BASTION_RECOVERY_KEY", prompt="Recovery key: "
    )
    try:
        crypto.wipe(recovery_key.decode(typed))  # a typo is caught before anything else
        new = read_new_passphrase(args, fd=args.new_passphrase_fd, env="BASTION_NEW_PASSPHRASE")
        try:
            vault = Vault.recover(folder, typed, new, accept_rollback=args.accept_rollback)
        finally:
            crypto.wipe(new)
    finally:
        crypto.wipe(typed)
    try:
        audit.record(vault.store, "recover", failed_before=vault.failed_unlocks)
        audit.record(vault.store, "lock", via="cli:recover")
    finally:
        vault.close()
    print(
        "bastion: new passphrase set; the old one no longer opens the vault. The recovery key "
        "still does: if it may have been seen, replace it with `bastion recovery-key --rotate`",
        file=sys.stderr,
    )
    return 0


def cmd_recovery_key(args: argparse.Namespace) -> int:
    with open_vault(args) as vault:
        had = vault.has_recovery_key
        if not args.rotate:
            print(
                "this vault has a recovery key (replace it with --rotate)"
                if had
                else "this vault has no recovery key: make one with --rotate"
            )
            return 0 if had else EXIT_ERROR
        key = vault.rotate_recovery_key()
        audit.record(vault.store, "recovery_key.rotate", replaced=had)
    if had:
        print("bastion: new recovery key made; the old one no longer works", file=sys.stderr)
    show_recovery_key(key)
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


def add_weak_passphrase(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weak-passphrase",
        action="store_true",
        help="accept a passphrase zxcvbn scores below 2 of 4 (not recommended)",
    )


def add_create_args(p: argparse.ArgumentParser) -> None:
    """What creating a vault takes (``init``, ``vaults new``)."""
    p.add_argument("--passphrase-fd", type=int, metavar="FD")
    p.add_argument("--kdf-memory-mib", type=int, default=64, metavar="MIB", help="Argon2id memory")
    p.add_argument("--kdf-passes", type=int, default=4, metavar="N", help="Argon2id passes")
    add_weak_passphrase(p)


def add_parsers(sub: Any) -> None:
    """Register this family's commands."""
    p = sub.add_parser("init", help="create the encrypted vault (prints its recovery key once)")
    add_create_args(p)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("passwd", help="change the vault passphrase (the recovery key stays)")
    add_passphrase_fd(p)
    p.add_argument("--new-passphrase-fd", type=int, metavar="FD")
    add_weak_passphrase(p)
    p.add_argument(
        "--rekey",
        action="store_true",
        help="also rotate the data key (re-encrypts the whole database): use it when an old "
        "copy of vault.hdr or the old passphrase may be known to someone",
    )
    p.set_defaults(func=cmd_passwd)

    p = sub.add_parser(
        "recover", help="set a new passphrase with the recovery key (the old one stops working)"
    )
    p.add_argument(
        "--recovery-key-fd",
        type=int,
        metavar="FD",
        help="read the recovery key from this file descriptor (else $BASTION_RECOVERY_KEY, "
        "else the terminal)",
    )
    p.add_argument(
        "--new-passphrase-fd",
        type=int,
        metavar="FD",
        help="read the new passphrase from this file descriptor (else $BASTION_NEW_PASSPHRASE, "
        "else the terminal)",
    )
    p.add_argument("--accept-rollback", action="store_true")
    add_weak_passphrase(p)
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser("recovery-key", help="whether the vault has a recovery key; --rotate")
    p.add_argument(
        "--rotate",
        action="store_true",
        help="make a new recovery key (shown once); the old one stops working",
    )
    add_passphrase_fd(p)
    p.set_defaults(func=cmd_recovery_key)

    p = sub.add_parser("doctor", help="check the vault, files, offline guard, models, disk")
    p.add_argument("--json", action="store_true")
    p.add_argument("--passphrase-fd", type=int, metavar="FD")
    p.set_defaults(func=cmd_doctor)
