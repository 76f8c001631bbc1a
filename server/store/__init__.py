"""Persistence: SQLAlchemy models and the only module that issues SQL (store.py)."""
