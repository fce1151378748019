"""GET /api/debug/process: admins see the figures a leak would grow; nobody else does."""

from __future__ import annotations

import os
import sys

import httpx
import pytest
from sqlalchemy import event

from loom_backend.api import create_api
from loom_backend.auth import AccessControl, Role, TokenKind
from loom_backend.domain import DryRunResult
from loom_backend.service import LoomService
from loom_backend.store.sql_store import SqlStore
from tests.fakes import FakeEngine, FakeNotifier

PATH = "/api/debug/process"


def client(store: SqlStore, access: AccessControl) -> httpx.AsyncClient:
    service = LoomService.over(store, FakeEngine(), FakeNotifier(dry_run_result=DryRunResult(steps=[])), access)
    app = create_api(lambda: service)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://loom")


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_an_admin_sees_this_process_size_threads_and_sys_path(store: SqlStore, access: AccessControl) -> None:
    token = access.create_token(TokenKind.OPERATOR, "ada", Role.ADMIN)[1]
    async with client(store, access) as http:
        response = await http.get(PATH, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    figures = response.json()
    assert figures["pid"] == os.getpid()
    assert figures["sysPathEntries"] == len(sys.path)
    assert figures["rssBytes"] > 1_000_000
    assert figures["threads"] >= 1
    groups = figures["threadGroups"]
    assert groups["MainThread"] == 1 and sum(groups.values()) == figures["threads"], groups
    assert figures["uptimeSeconds"] >= 0
    assert len(figures["gcCounts"]) == 3


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_an_admin_sees_how_many_sql_statements_this_process_has_sent(
    store: SqlStore, access: AccessControl
) -> None:
    token = access.create_token(TokenKind.OPERATOR, "ada", Role.ADMIN)[1]
    seen: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda _c, _k, statement, *_: seen.append(statement))

    async def sent() -> int:
        response = await http.get(PATH, headers={"Authorization": f"Bearer {token}"})
        return int(response.json()["sqlStatements"])

    async with client(store, access) as http:
        first = await sent()
        asking = await sent() - first  # the request's own token check
        before = await sent()
        seen.clear()
        store.list_migrations()
        store.candidate_kinds("none")
        reads = len(seen)
        after = await sent()
    assert reads >= 2
    assert after - before == reads + asking


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_operators_are_refused_and_strangers_asked_to_sign_in(store: SqlStore, access: AccessControl) -> None:
    operator = access.create_token(TokenKind.OPERATOR, "olga", Role.OPERATOR)[1]
    async with client(store, access) as http:
        assert (await http.get(PATH, headers={"Authorization": f"Bearer {operator}"})).status_code == 403
        assert (await http.get(PATH)).status_code == 401
