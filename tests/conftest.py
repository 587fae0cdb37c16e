"""Fixtures shared by every test directory: the PostgreSQL test server
(tests/postgres.py), started only by the tests that use it."""

from __future__ import annotations

from tests.postgres import postgres_dsn, postgres_server

__all__ = ["postgres_dsn", "postgres_server"]
