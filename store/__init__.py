"""Persistent state: SQL tables (models), connection and migrations (db), queries (repo)."""
