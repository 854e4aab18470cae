"""Bastion: a private AI assistant in the terminal.

The one top-level import name of the distribution. Its subpackages are the folders at the
repository's root (``app/``, ``models/``, ``storage/``, ``tui/``), linked here so that every
tool (setuptools, mypy, import-linter, PyInstaller) sees one ``bastion`` package.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bastion")
except PackageNotFoundError:  # pragma: no cover - running from a tree that is not installed
    __version__ = "0+unknown"
