"""Persistent state, the bottom layer beside assistant.llm: imports nothing from assistant/ or
feedback/. Owns the tables (tables.py) and their migrations, the connection (db.py), one
repository per aggregate on a shared base (conversations, grading, pool, runs), the dashboard's
SQL aggregates, the Chroma index (vectors.py, the only chromadb import) and the adapter files."""
