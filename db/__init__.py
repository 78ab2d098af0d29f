"""Persistence: ORM models, sessions and migrations."""
