"""Who is calling, and what they may do: principals, roles, passwords, tokens and sessions.

Operators are people (built-in accounts with sessions, or names vouched for by an authenticating
proxy) and scripts holding operator tokens; each has a role. Migrators hold Migrator tokens, and a
Migration belongs to the token that first announced it. The value types (Principal, Role, ...) are the
domain's and the AuthStore is a port; the service asks `AccessControl` who a caller is and whether they own a
Migration. No HTTP here.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from loom_backend import errors
from loom_backend.domain import (  # noqa: F401  (origin_refusal, SignInThrottle: moved to the domain, named here too)
    Principal,
    PrincipalKind,
    Role,
    SignInThrottle,
    TokenKind,
    TokenRecord,
    UserRecord,
    origin_refusal,
)
from loom_backend.ports import AuthStore
from loom_backend.signing import token_digest

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
MIN_PASSWORD_LENGTH = 8
MIN_PROVISIONED_TOKEN_LENGTH = 32
TOKEN_BYTES = 32


def _utcnow() -> datetime:
    return datetime.now(UTC)


def new_token(kind: TokenKind) -> str:
    """256 random bits with a prefix that says what it is (and lets secret scanners find leaked ones)."""
    prefix = "loom_m_" if kind == TokenKind.MIGRATOR else "loom_o_"
    return prefix + secrets.token_urlsafe(TOKEN_BYTES)


def hash_password(password: str) -> str:
    """Argon2id, argon2-cffi's defaults: passwords are guessable, so each guess must cost time and memory.

    Tokens are not hashed this way (see `signing.token_digest`): 256 random bits cannot be guessed,
    so a fast SHA-256 lookup is as safe and keeps each Migrator call cheap.
    """
    from argon2 import PasswordHasher

    return PasswordHasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    """A hash to verify against when the account does not exist, so timing does not tell which names do."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


def check_name(name: str, what: str = "name") -> str:
    if not NAME_PATTERN.match(name):
        raise errors.InvalidInput(
            f"A {what} is 1-128 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", field=what
        )
    return name


@dataclass(frozen=True)
class ProvisionedToken:
    kind: TokenKind
    name: str
    role: Role | None
    token: str


def parse_provisioned_tokens(spec: str) -> list[ProvisionedToken]:
    """`migrator:NAME=TOKEN` and `operator:NAME:ROLE=TOKEN`, comma-separated (LOOM_BOOTSTRAP_TOKENS)."""
    tokens: list[ProvisionedToken] = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        who, _, token = entry.partition("=")
        parts = who.split(":")
        if len(token) < MIN_PROVISIONED_TOKEN_LENGTH:
            raise ValueError(
                f"LOOM_BOOTSTRAP_TOKENS: the token of {who!r} must be at least {MIN_PROVISIONED_TOKEN_LENGTH} "
                "characters of random text"
            )
        if parts[0] == TokenKind.MIGRATOR and len(parts) == 2:
            tokens.append(ProvisionedToken(TokenKind.MIGRATOR, check_name(parts[1]), None, token))
        elif parts[0] == TokenKind.OPERATOR and len(parts) == 3 and parts[2] in set(Role):
            tokens.append(ProvisionedToken(TokenKind.OPERATOR, check_name(parts[1]), Role(parts[2]), token))
        else:
            raise ValueError(
                f"LOOM_BOOTSTRAP_TOKENS: {who!r} is neither migrator:NAME nor operator:NAME:ROLE "
                "(ROLE one of viewer, operator, admin)"
            )
    return tokens


class Recent:
    """Answers remembered for a few seconds, so a busy Migrator's every callback does not cost its queries.

    Only answers that let a caller in are kept; a revoked token or a changed owner takes effect
    once its entry expires (or at once, when this process made the change).
    """

    def __init__(self, seconds: float, clock: Callable[[], datetime], size: int = 10_000) -> None:
        self.lifetime = timedelta(seconds=seconds)
        self._clock = clock
        self._size = size
        self._entries: dict[Any, tuple[datetime, Any]] = {}

    def get(self, key: Any) -> Any | None:
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] > self._clock() else None

    def put(self, key: Any, value: Any) -> None:
        if not self.lifetime:
            return
        if len(self._entries) >= self._size:
            self._entries.clear()  # a burst of distinct keys: start over rather than track age
        self._entries[key] = (self._clock() + self.lifetime, value)

    def forget(self, match: Callable[[Any], bool]) -> None:
        for key in [k for k in list(self._entries) if match(k)]:
            self._entries.pop(key, None)


class AccessControl:
    """Who a caller is, and which Migrations a Migrator token owns, over an AuthStore; the service asks it.

    Synchronous: the HTTP layer runs it in a thread, except the `recent_*` lookups, which do no I/O.
    """

    def __init__(
        self,
        store: AuthStore,
        *,
        session_hours: float = 12.0,
        proxy_header: str | None = None,
        proxy_role: Role = Role.OPERATOR,
        secure_cookie: bool = False,
        clock: Callable[[], datetime] = _utcnow,
        remember_seconds: float = 5.0,
    ) -> None:
        self.store = store
        self.session_lifetime = timedelta(hours=session_hours)
        self.proxy_header = proxy_header or None
        self.proxy_role = proxy_role
        self.secure_cookie = secure_cookie
        self.clock = clock
        self._recent = Recent(remember_seconds, lambda: self.clock())

    @property
    def remembered_for(self) -> timedelta:
        """How long an answer that let a caller in is reused without asking the store."""
        return self._recent.lifetime

    # -- accounts and tokens ----------------------------------------------------------------

    def add_user(self, name: str, role: Role, password: str) -> UserRecord:
        check_name(name, "username")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise errors.InvalidInput(f"A password needs at least {MIN_PASSWORD_LENGTH} characters", field="password")
        user = UserRecord(name=name, role=role, password_hash=hash_password(password), created_at=self.clock())
        if not self.store.add_user(user):
            raise errors.InvalidInput(f"An account named {name!r} already exists", field="username")
        return user

    def ensure_first_admin(self, name: str = "admin") -> str | None:
        """On a fresh install, create an admin and return its password (to show once); None when accounts exist."""
        if self.store.count_users() > 0:
            return None
        password = secrets.token_urlsafe(12)
        try:
            self.add_user(name, Role.ADMIN, password)
        except errors.InvalidInput:
            return None  # another replica starting at the same moment created it
        return password

    def create_token(self, kind: TokenKind, name: str, role: Role | None = None) -> tuple[TokenRecord, str]:
        """A new token; its secret is returned once and never stored."""
        secret = new_token(kind)
        return self._add_token(kind, name, role, secret), secret

    def provision_token(self, token: ProvisionedToken) -> TokenRecord:
        """Make a token chosen outside Loom (LOOM_BOOTSTRAP_TOKENS) valid; idempotent."""
        existing = self.store.token_by_digest(token_digest(token.token))
        if existing is not None and existing.revoked_at is None:
            return existing
        return self._add_token(token.kind, token.name, token.role, token.token)

    def _add_token(self, kind: TokenKind, name: str, role: Role | None, secret: str) -> TokenRecord:
        check_name(name)
        if kind == TokenKind.OPERATOR and role is None:
            raise errors.InvalidInput("An operator token needs a role: viewer, operator or admin", field="role")
        record = TokenRecord(
            id=secrets.token_hex(6),
            kind=kind,
            name=name,
            role=role if kind == TokenKind.OPERATOR else None,
            digest=token_digest(secret),
            created_at=self.clock(),
        )
        if not self.store.add_token(record):
            raise errors.InvalidInput("That token is already in use (revoked tokens cannot be reused)", field="token")
        return record

    # -- authentication ---------------------------------------------------------------------

    def bearer(self, token: str) -> Principal | None:
        digest = token_digest(token)
        record = self.store.token_by_digest(digest) if token else None
        if record is None or record.revoked_at is not None:
            return None
        if record.kind == TokenKind.MIGRATOR:
            principal = Principal(record.name, PrincipalKind.MIGRATOR, None, record.id)
        else:
            principal = Principal(record.name, PrincipalKind.OPERATOR_TOKEN, record.role, record.id)
        self._recent.put(("bearer", digest), principal)
        return principal

    def recent_bearer(self, token: str) -> Principal | None:
        """What `bearer` answered for this token in the last few seconds; None when it must be asked."""
        result: Principal | None = self._recent.get(("bearer", token_digest(token)))
        return result

    def login(self, name: str, password: str) -> tuple[str, Principal]:
        """Check the password and open a session; return the session's secret (the cookie) and who signed in."""
        user = self.store.get_user(name)
        if user is None:
            verify_password(_dummy_hash(), password)
            raise errors.Unauthenticated("Wrong username or password")
        if not verify_password(user.password_hash, password):
            raise errors.Unauthenticated("Wrong username or password")
        now = self.clock()
        self.store.delete_expired_sessions(now)
        secret = secrets.token_urlsafe(TOKEN_BYTES)
        self.store.add_session(token_digest(secret), user.name, now, now + self.session_lifetime)
        return secret, Principal(user.name, PrincipalKind.USER, user.role)

    def session(self, secret: str) -> Principal | None:
        user = self.store.session_user(token_digest(secret), self.clock()) if secret else None
        return None if user is None else Principal(user.name, PrincipalKind.USER, user.role)

    def logout(self, secret: str) -> None:
        if secret:
            self.store.delete_session(token_digest(secret))

    def proxy_user(self, name: str) -> Principal:
        """A name the authenticating proxy vouches for: a built-in account's role when one has that name."""
        name = name.strip()
        if not NAME_PATTERN.match(name):
            raise errors.Unauthenticated(f"The {self.proxy_header} header does not hold a valid user name")
        user = self.store.get_user(name)
        return Principal(name, PrincipalKind.PROXY_USER, user.role if user else self.proxy_role)

    # -- authorization ----------------------------------------------------------------------

    def claim_migration(self, principal: Principal, migration_id: str) -> bool:
        """Announcing makes the token the Migration's owner, unless another active token owns it; True when new."""
        token_id = self._migrator_token(principal)
        before = self.store.ownership(migration_id).token_id
        owner = self.store.claim_migration(migration_id, token_id, self.clock())
        self._recent.forget(lambda key: key[-1] == migration_id)
        if owner != token_id:
            raise errors.Forbidden(
                f"Migration {migration_id!r} belongs to another Migrator token; announce it with the token "
                "that first announced it, or ask an admin to revoke that token"
            )
        return before != token_id

    def release_migration(self, principal: Principal, migration_id: str) -> None:
        self.store.release_migration(migration_id, self._migrator_token(principal))
        self._recent.forget(lambda key: key[-1] == migration_id)

    def check_migration(self, principal: Principal, migration_id: str) -> None:
        """Only the owning token may submit Candidates or post events; an unknown Migration is left to the service."""
        token_id = self._migrator_token(principal)
        ownership = self.store.ownership(migration_id)
        if not ownership.exists:
            return
        if ownership.token_id is None:
            raise errors.Forbidden(
                f"Migration {migration_id!r} has no owning Migrator token; announce it with this token first"
            )
        if ownership.token_id != token_id:
            raise errors.Forbidden(f"Migration {migration_id!r} belongs to another Migrator token")
        self._recent.put(("owner", token_id, migration_id), True)

    def recently_allowed(self, principal: Principal, migration_id: str) -> bool:
        """Whether `check_migration` let this token at this Migration in the last few seconds."""
        return self._recent.get(("owner", principal.token_id, migration_id)) is True

    def signing_key(self, migration_id: str) -> bytes | None:
        """The key requests to this Migration's Migrator are signed with (see AuthStore.signing_key)."""
        key = self.store.signing_key(migration_id)
        if key is not None:
            self._recent.put(("signing_key", migration_id), key)
        return key

    def recent_signing_key(self, migration_id: str) -> bytes | None:
        """What `signing_key` answered for this Migration in the last few seconds; None when it must be asked."""
        key: bytes | None = self._recent.get(("signing_key", migration_id))
        return key

    @staticmethod
    def _migrator_token(principal: Principal) -> str:
        if not principal.is_migrator or principal.token_id is None:
            raise errors.Forbidden(
                "Only Migrator tokens may call the Migrator routes; create one with `loom token create`"
            )
        return principal.token_id
