"""The folder-backed archive: file layout, SQLite index, audit log."""
