"""Alembic environment: the schema is SQLModel.metadata; the URL comes from LOOM_* settings or the caller."""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import SQLModel

import loom_backend.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from alembic import context
from loom_backend.settings import get_settings
from loom_backend.store.sql_store import create_db_engine

target_metadata = SQLModel.metadata


def run_migrations() -> None:
    engine = context.config.attributes.get("engine") or create_db_engine(get_settings().sqlalchemy_url)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas and workers starting at once upgrade one after another, not over each other.
            connection.execute(text("SELECT pg_advisory_xact_lock(7453001)"))
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        context.run_migrations()


run_migrations()
