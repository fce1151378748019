"""Honest credentials for tests: a Migrator token and an operator token, made valid the way a deployment would.

In-process tests provision them into the AccessControl they pass to `create_api`; subprocess apps get them
through LOOM_BOOTSTRAP_TOKENS (`env`). `auth` sends each token where its holder would: the Migrator token on
the Migrator routes, the operator token everywhere else.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Generator
from dataclasses import dataclass

import httpx

from loom_backend.auth import AccessControl, ProvisionedToken, Role, TokenKind

_MIGRATOR_ROUTE = re.compile(r"^/api/(registry/announce|event/[^/]+|migrations/[^/]+/candidates)$")


def is_migrator_route(method: str, path: str) -> bool:
    return method == "POST" and _MIGRATOR_ROUTE.match(path) is not None


class LoomAuth(httpx.Auth):
    def __init__(self, migrator_token: str, operator_token: str) -> None:
        self.migrator_token = migrator_token
        self.operator_token = operator_token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "Authorization" in request.headers:  # a test that chose who calls
            yield request
            return
        migrator = is_migrator_route(request.method, request.url.path)
        request.headers["Authorization"] = f"Bearer {self.migrator_token if migrator else self.operator_token}"
        yield request


@dataclass(frozen=True)
class Credentials:
    migrator_token: str
    operator_token: str
    migrator: str = "test-migrator"
    operator: str = "test-operator"
    role: Role = Role.ADMIN

    @property
    def env(self) -> str:
        """The LOOM_BOOTSTRAP_TOKENS value that makes both tokens valid in a subprocess app."""
        return (
            f"migrator:{self.migrator}={self.migrator_token},"
            f"operator:{self.operator}:{self.role.value}={self.operator_token}"
        )

    @property
    def auth(self) -> LoomAuth:
        return LoomAuth(self.migrator_token, self.operator_token)

    @property
    def migrator_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.migrator_token}"}

    @property
    def operator_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_token}"}

    def grant(self, access: AccessControl) -> Credentials:
        """Make both tokens valid in this AccessControl (what LOOM_BOOTSTRAP_TOKENS does at start)."""
        access.provision_token(ProvisionedToken(TokenKind.MIGRATOR, self.migrator, None, self.migrator_token))
        access.provision_token(ProvisionedToken(TokenKind.OPERATOR, self.operator, self.role, self.operator_token))
        return self


def new_credentials(
    migrator: str = "test-migrator", operator: str = "test-operator", role: Role = Role.ADMIN
) -> Credentials:
    return Credentials(
        migrator_token="loom_m_" + secrets.token_urlsafe(32),
        operator_token="loom_o_" + secrets.token_urlsafe(32),
        migrator=migrator,
        operator=operator,
        role=role,
    )
