"""The SavedViews adapter: a Migration's named table views, on the SQL store's engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table, delete, func, select
from sqlmodel import Session

from loom_backend.domain import SavedView
from loom_backend.store.tables import SavedViewRow, insert_on

SAVED_VIEWS: Table = SavedViewRow.__table__  # type: ignore[attr-defined]


def _view(r: Any) -> SavedView:
    updated: datetime = r["updated_at"]
    return SavedView(
        name=r["name"],
        params=dict(r["params"] or {}),
        saved_by=r["saved_by"],
        updated_at=updated if updated.tzinfo else updated.replace(tzinfo=UTC),
    )


class SqlSavedViews:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def list_views(self, migration_id: str) -> list[SavedView]:
        with self._session() as session:
            rows = session.execute(
                select(SAVED_VIEWS).where(SAVED_VIEWS.c.migration_id == migration_id).order_by(SAVED_VIEWS.c.name)
            ).mappings()
            return [_view(r) for r in rows]

    def get_view(self, migration_id: str, name: str) -> SavedView | None:
        with self._session() as session:
            row = (
                session.execute(
                    select(SAVED_VIEWS).where(SAVED_VIEWS.c.migration_id == migration_id, SAVED_VIEWS.c.name == name)
                )
                .mappings()
                .first()
            )
            return _view(row) if row is not None else None

    def put_view(self, migration_id: str, view: SavedView, limit: int) -> bool:
        """Insert or replace the view; False (nothing written) when it is new and the Migration has `limit` views."""
        with self._session() as session:
            count = session.execute(
                select(func.count()).select_from(SAVED_VIEWS).where(SAVED_VIEWS.c.migration_id == migration_id)
            ).scalar_one()
            exists = session.execute(
                select(SAVED_VIEWS.c.name).where(
                    SAVED_VIEWS.c.migration_id == migration_id, SAVED_VIEWS.c.name == view.name
                )
            ).first()
            if exists is None and count >= limit:
                return False
            row = {
                "migration_id": migration_id,
                "name": view.name,
                "params": view.params,
                "saved_by": view.saved_by,
                "updated_at": view.updated_at,
            }
            statement = insert_on(self._dialect, SAVED_VIEWS).values(row)
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["migration_id", "name"],
                    set_={k: statement.excluded[k] for k in ("params", "saved_by", "updated_at")},
                )
            )
            return True

    def delete_view(self, migration_id: str, name: str) -> bool:
        with self._session() as session:
            result = session.execute(
                delete(SAVED_VIEWS).where(SAVED_VIEWS.c.migration_id == migration_id, SAVED_VIEWS.c.name == name)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]
