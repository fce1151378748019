"""The AuthStore adapter: accounts, tokens, sessions and Migration owners, on the SQL store's engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from loom_backend.domain import Ownership, Role, TokenKind, TokenRecord, UserRecord
from loom_backend.store.tables import ApiTokenRow, MigrationOwnerRow, MigrationRow, SessionRow, UserRow, insert_on

USERS: Table = UserRow.__table__  # type: ignore[attr-defined]
TOKENS: Table = ApiTokenRow.__table__  # type: ignore[attr-defined]
SESSIONS: Table = SessionRow.__table__  # type: ignore[attr-defined]
OWNERS: Table = MigrationOwnerRow.__table__  # type: ignore[attr-defined]
MIGRATIONS: Table = MigrationRow.__table__  # type: ignore[attr-defined]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _user(r: Any) -> UserRecord:
    return UserRecord(
        name=r["name"], role=Role(r["role"]), password_hash=r["password_hash"], created_at=r["created_at"]
    )


def _token(r: Any) -> TokenRecord:
    return TokenRecord(
        id=r["id"],
        kind=TokenKind(r["kind"]),
        name=r["name"],
        role=Role(r["role"]) if r["role"] else None,
        digest=r["digest"],
        created_at=_utc(r["created_at"]) or r["created_at"],
        revoked_at=_utc(r["revoked_at"]),
    )


class SqlAuthStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def _insert(self, table: Table) -> Any:
        return insert_on(self._dialect, table)

    # -- accounts ---------------------------------------------------------------------------

    def add_user(self, user: UserRecord) -> bool:
        row = {"name": user.name, "role": user.role.value, "password_hash": user.password_hash}
        statement = self._insert(USERS).values(row | {"created_at": user.created_at}).on_conflict_do_nothing()
        with self._session() as session:
            return session.execute(statement.returning(USERS.c.name)).first() is not None

    def get_user(self, name: str) -> UserRecord | None:
        with self._session() as session:
            row = session.execute(select(USERS).where(USERS.c.name == name)).mappings().first()
            return None if row is None else _user(row)

    def count_users(self) -> int:
        with self._session() as session:
            return int(session.execute(select(func.count()).select_from(USERS)).scalar_one())

    # -- tokens -----------------------------------------------------------------------------

    def add_token(self, token: TokenRecord) -> bool:
        row = {
            "id": token.id,
            "kind": token.kind.value,
            "name": token.name,
            "role": token.role.value if token.role else None,
            "digest": token.digest,
            "created_at": token.created_at,
            "revoked_at": token.revoked_at,
        }
        try:
            with self._session() as session:
                session.execute(TOKENS.insert().values(row))
        except IntegrityError:
            return False
        return True

    def token_by_digest(self, digest: str) -> TokenRecord | None:
        with self._session() as session:
            row = session.execute(select(TOKENS).where(TOKENS.c.digest == digest)).mappings().first()
            return None if row is None else _token(row)

    def list_tokens(self) -> list[TokenRecord]:
        with self._session() as session:
            return [_token(r) for r in session.execute(select(TOKENS).order_by(TOKENS.c.created_at)).mappings()]

    def revoke_token(self, token_id: str, now: datetime) -> bool:
        with self._session() as session:
            result = session.execute(
                update(TOKENS)
                .where(TOKENS.c.id == token_id, TOKENS.c.revoked_at.is_(None))
                .values(revoked_at=now)
                .returning(TOKENS.c.id)
            )
            return result.first() is not None

    def revoke_tokens_named(self, kind: TokenKind, name: str, now: datetime) -> int:
        with self._session() as session:
            result = session.execute(
                update(TOKENS)
                .where(TOKENS.c.kind == kind.value, TOKENS.c.name == name, TOKENS.c.revoked_at.is_(None))
                .values(revoked_at=now)
                .returning(TOKENS.c.id)
            )
            return len(result.all())

    # -- sessions ---------------------------------------------------------------------------

    def add_session(self, digest: str, user_name: str, created_at: datetime, expires_at: datetime) -> None:
        with self._session() as session:
            session.execute(
                SESSIONS.insert().values(
                    digest=digest, user_name=user_name, created_at=created_at, expires_at=expires_at
                )
            )

    def session_user(self, digest: str, now: datetime) -> UserRecord | None:
        with self._session() as session:
            row = (
                session.execute(
                    select(USERS)
                    .join(SESSIONS, SESSIONS.c.user_name == USERS.c.name)
                    .where(SESSIONS.c.digest == digest, SESSIONS.c.expires_at > now)
                )
                .mappings()
                .first()
            )
            return None if row is None else _user(row)

    def delete_session(self, digest: str) -> None:
        with self._session() as session:
            session.execute(delete(SESSIONS).where(SESSIONS.c.digest == digest))

    def delete_expired_sessions(self, now: datetime) -> int:
        with self._session() as session:
            return len(
                session.execute(delete(SESSIONS).where(SESSIONS.c.expires_at <= now).returning(SESSIONS.c.digest)).all()
            )

    # -- Migration owners -------------------------------------------------------------------

    def _active_owner(self, session: Session, migration_id: str) -> str | None:
        return session.execute(
            select(OWNERS.c.token_id)
            .join(TOKENS, TOKENS.c.id == OWNERS.c.token_id)
            .where(OWNERS.c.migration_id == migration_id, TOKENS.c.revoked_at.is_(None))
        ).scalar_one_or_none()

    def claim_migration(self, migration_id: str, token_id: str, now: datetime) -> str:
        """Insert-or-take-over in one transaction: a revoked owner's Migration goes to the next token that announces it."""
        with self._session() as session:
            session.execute(
                self._insert(OWNERS)
                .values(migration_id=migration_id, token_id=token_id, claimed_at=now)
                .on_conflict_do_nothing()
            )
            owner = self._active_owner(session, migration_id)
            if owner is None:
                session.execute(
                    update(OWNERS)
                    .where(OWNERS.c.migration_id == migration_id)
                    .values(token_id=token_id, claimed_at=now)
                )
                owner = token_id
            return owner

    def release_migration(self, migration_id: str, token_id: str) -> None:
        with self._session() as session:
            session.execute(delete(OWNERS).where(OWNERS.c.migration_id == migration_id, OWNERS.c.token_id == token_id))

    def ownership(self, migration_id: str) -> Ownership:
        with self._session() as session:
            exists = session.execute(select(MIGRATIONS.c.id).where(MIGRATIONS.c.id == migration_id)).first()
            return Ownership(exists=exists is not None, token_id=self._active_owner(session, migration_id))

    def signing_key(self, migration_id: str) -> bytes | None:
        with self._session() as session:
            digest = session.execute(
                select(TOKENS.c.digest)
                .join(OWNERS, TOKENS.c.id == OWNERS.c.token_id)
                .where(OWNERS.c.migration_id == migration_id, TOKENS.c.revoked_at.is_(None))
            ).scalar_one_or_none()
        return bytes.fromhex(digest) if digest else None
