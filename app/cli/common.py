"""What the CLI's commands share: errors, the argument parser, opening the vault,
confirmations and the encryption choices of exports."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from bastion.app import audit, paths, terminal, transfer
from bastion.app.secrets_input import read_passphrase
from bastion.storage import crypto
from bastion.storage import export as export_fmt
from bastion.storage.export import ExportError
from bastion.storage.vault import Vault, VaultMissingError

EXIT_ERROR = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad option or argument."""


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """Text safe for a terminal (see :func:`bastion.app.terminal.visible`): control
    characters, bidi controls (and newlines, unless ``keep_newlines``) shown escaped."""
    return terminal.visible(str(text), keep_newlines=keep_newlines)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(printable(f"{self.prog}: {message} (see --help)"))


NO_RECOVERY_HINT = (
    "bastion: this vault has no recovery key: if the passphrase is forgotten, it is lost; "
    "make one with `bastion recovery-key --rotate`"
)


def missing_vault(folder: Path) -> VaultMissingError:
    name = paths.vault_name()
    where = "" if name == paths.DEFAULT_VAULT else f"--vault {name} "
    return VaultMissingError(f"no vault in {folder}; create one with `bastion {where}init`")


@contextlib.contextmanager
def open_vault(args: argparse.Namespace) -> Iterator[Vault]:
    """Unlock the chosen vault for one command; the unlock and the lock go to its audit log."""
    folder = paths.vault_dir()
    if not paths.vault_exists(folder):
        raise missing_vault(folder)
    pw = read_passphrase(fd=getattr(args, "passphrase_fd", None))
    try:
        vault = Vault.open(folder, pw, accept_rollback=getattr(args, "accept_rollback", False))
    finally:
        crypto.wipe(pw)
    via = f"cli:{getattr(args, 'command', None) or '?'}"
    try:
        audit.record(vault.store, "unlock", via=via, failed_before=vault.failed_unlocks)
        if vault.rollback_warning:
            print(f"bastion: warning: {printable(vault.rollback_warning)}", file=sys.stderr)
            audit.record(vault.store, "rollback.accepted")
        if not vault.has_recovery_key and getattr(args, "command", None) != "recovery-key":
            print(NO_RECOVERY_HINT, file=sys.stderr)
        yield vault
    finally:
        try:
            with contextlib.suppress(Exception):  # a full disk must not hide the real error
                audit.record(vault.store, "lock", via=via)
        finally:
            vault.close()


def export_passphrase(args: argparse.Namespace, *, confirm: bool) -> str:
    pw = read_passphrase(
        fd=getattr(args, "export_passphrase_fd", None),
        env="BASTION_EXPORT_PASSPHRASE",
        prompt="Export passphrase: ",
        confirm=confirm,
    )
    try:
        return pw.decode("utf-8")
    finally:
        crypto.wipe(pw)


def encryption(
    args: argparse.Namespace, vault: Vault, recipients: list[Any]
) -> tuple[list[Any], str | None]:
    """Recipients and passphrase for an export: a passphrase if asked, else the given
    recipients, else the vault's own identity."""
    passphrase = export_passphrase(args, confirm=True) if args.passphrase else None
    if passphrase is None and not recipients:
        recipients = [transfer.ensure_identity(vault.store).to_public()]
    return recipients, passphrase


def recipient_texts(args: argparse.Namespace, vault: Vault, passphrase: str | None) -> list[str]:
    """The public keys an export was encrypted to, as text (for the audit log's
    fingerprints): the ``--recipient`` keys, else the vault's own, none with a passphrase."""
    if passphrase is not None:
        return []
    given = getattr(args, "recipient", None)
    if given:
        return [str(r).strip() for r in given]
    identity = transfer.vault_identity(vault.store)
    return [export_fmt.public_key(identity)] if identity is not None else []


def confirm(question: str) -> bool:
    try:
        with open("/dev/tty") as tty:
            print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
            return tty.readline().strip().lower() in ("y", "yes")
    except OSError:
        raise UsageError("no terminal to confirm on: add --yes") from None


def read_export(args: argparse.Namespace) -> tuple[bytes, export_fmt.AgeHeader]:
    """The file's bytes (size-limited) and its checked age header, read once."""
    data = export_fmt.read_limited(Path(args.file), args.max_size)
    return data, export_fmt.read_header(data, max_work_factor=args.max_work_factor)


def decrypt_file(
    args: argparse.Namespace,
    vault: Vault | None,
    data: bytes,
    header: export_fmt.AgeHeader,
) -> bytes:
    """Decrypt an export in memory: with a passphrase (scrypt files), ``--identity``, or the
    vault's own identity (``vault`` must then be open)."""
    if "scrypt" in header.kinds:
        return export_fmt.decrypt(
            data,
            passphrase=export_passphrase(args, confirm=False),
            max_work_factor=args.max_work_factor,
        )
    if args.identity:
        identities = [export_fmt.read_identity_file(Path(args.identity))]
    else:
        identities = transfer.vault_identities(vault.store) if vault is not None else []
        if not identities:
            raise ExportError("no identity to decrypt with: give --identity FILE")
    return export_fmt.decrypt(data, identities=identities, max_work_factor=args.max_work_factor)


def add_encryption_args(p: argparse.ArgumentParser, *, recipients: bool = True) -> None:
    """How a file written for export is encrypted (see :func:`encryption`): to the vault's
    own key by default, with ``--passphrase``, or to ``--recipient`` keys."""
    p.add_argument("--passphrase", action="store_true", help="encrypt with a passphrase")
    if recipients:
        p.add_argument(
            "--recipient",
            action="append",
            metavar="KEY",
            help="age (age1...) or ssh-ed25519 public key; repeatable",
        )
    p.add_argument("--export-passphrase-fd", type=int, metavar="FD")


def add_decryption_args(
    p: argparse.ArgumentParser, *, max_size: int = export_fmt.DEFAULT_MAX_SIZE
) -> None:
    """How an age file is read and decrypted (see :func:`read_export`, :func:`decrypt_file`)."""
    p.add_argument("--identity", metavar="FILE", help="an age identity file")
    p.add_argument("--export-passphrase-fd", type=int, metavar="FD")
    p.add_argument(
        "--max-work-factor",
        type=int,
        default=export_fmt.DEFAULT_MAX_WORK_FACTOR,
        metavar="N",
        help="refuse scrypt work factors above 2^N",
    )
    p.add_argument(
        "--max-size", type=int, default=max_size, metavar="BYTES", help="refuse larger files"
    )


def add_passphrase_fd(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--passphrase-fd",
        type=int,
        metavar="FD",
        help="read the vault passphrase from this file descriptor (else $BASTION_PASSPHRASE, "
        "else the terminal)",
    )
    p.add_argument(
        "--accept-rollback",
        action="store_true",
        help="open even if the database and its header are from different points in time",
    )
