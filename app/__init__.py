"""Bastion's use cases and command line. No SQL and no widgets here."""

__version__ = "0.1.0"
