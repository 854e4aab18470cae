"""The encrypted store: crypto, SQLCipher database, migrations and export formats."""
