"""Persistence: SQLAlchemy models and the only package that issues SQL (store.py assembles it)."""
