"""Bastion's use cases and command line. No SQL and no widgets here."""
