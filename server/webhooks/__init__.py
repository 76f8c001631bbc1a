"""Signed notifications of terminal jobs (Standard Webhooks), retried with backoff."""
