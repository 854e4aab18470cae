"""The ``bastion`` command line, one module per command family:

- :mod:`~bastion.app.cli.chat`: ``models``, ``ask``
- :mod:`~bastion.app.cli.vault`: ``init``, ``passwd``, ``recover``, ``recovery-key``,
  ``doctor``
- :mod:`~bastion.app.cli.vaults`: ``vaults list|new|remove``, ``audit``
- :mod:`~bastion.app.cli.history`: ``history ...``
- :mod:`~bastion.app.cli.transfer`: ``keys``, ``export``, ``verify``, ``import``, ``backup``,
  ``restore``
- :mod:`~bastion.app.cli.packs`: ``packs ...``
- :mod:`~bastion.app.cli.docs`: ``docs ...`` (and ``ask --doc``, in ``chat``)

Every failure the user can cause (no model, wrong passphrase, bad option...) ends as one
line on stderr and exit code 1 (2 for usage errors); never a traceback. Diagnostics name
ids, never message text.

``--vault NAME`` (or ``$BASTION_VAULT``) before the command chooses the vault every command
works on (:func:`bastion.app.paths.vault_dir`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from bastion import __version__
from bastion.app import paths, terminal
from bastion.app.cli import chat, docs, history, packs, transfer, vault, vaults
from bastion.app.cli.common import EXIT_ERROR, EXIT_USAGE, Parser, UsageError, printable
from bastion.app.documents import DocumentError
from bastion.app.packs import PackError, TemplateError
from bastion.app.paths import VaultNameError
from bastion.app.secrets_input import PassphraseError
from bastion.models.discovery import NoModelError
from bastion.models.engine import EngineError
from bastion.models.gguf import GGUFError
from bastion.storage.audit import AuditError
from bastion.storage.export import ExportError
from bastion.storage.store import StoreError
from bastion.storage.vault import RecoveryKeyError, UnlockError, VaultError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="bastion",
        description="A private AI assistant: a local model and an encrypted vault. "
        "Nothing leaves this machine. Without a command, the chat app starts.",
    )
    parser.add_argument("--version", action="version", version=f"bastion {__version__}")
    parser.add_argument(
        "--vault",
        metavar="NAME",
        help="the vault to use (default: $BASTION_VAULT, else 'default'); "
        "see `bastion vaults list`",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for family in (chat, vault, vaults, history, transfer, packs, docs):
        family.add_parsers(sub)
    return parser


# Exceptions that are the user's to fix: one line, no traceback.
_USER_ERRORS: tuple[type[Exception], ...] = (
    NoModelError,
    EngineError,
    GGUFError,
    VaultError,
    UnlockError,
    StoreError,
    PassphraseError,
    RecoveryKeyError,
    VaultNameError,
    AuditError,
    ExportError,
    PackError,
    TemplateError,
    DocumentError,
    OSError,
)


def _no_app() -> int:
    raise UsageError("bastion: give a command (the chat app starts from the `bastion` script)")


def main(argv: Sequence[str] | None = None, run_app: Callable[[], int] = _no_app) -> int:
    """Run the CLI. ``run_app`` starts the terminal app when no command is given; it is
    passed in by bastion.tui.launch so that the core never imports the UI."""
    os.umask(0o077)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        paths.select_vault(args.vault)
        func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
        if func is None:
            return run_app()
        with terminal.guarded_streams():  # the one output boundary (see app.terminal)
            return func(args)
    except UsageError as exc:
        print(printable(str(exc)), file=sys.stderr)
        return EXIT_USAGE
    except _USER_ERRORS as exc:
        print(f"bastion: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("bastion: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({printable(exc.filename)})" if exc.filename else ""
        return printable(f"{exc.strerror}{where}")
    text = str(exc) or type(exc).__name__
    return printable(text.splitlines()[0]) if text.strip() else type(exc).__name__


def entry() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    entry()


__all__ = ["build_parser", "main"]
