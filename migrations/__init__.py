"""Alembic migrations of the metadata database (core/schema.py runs them; see
docs/architecture.md for how to write one)."""
