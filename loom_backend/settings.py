"""Every LOOM_* setting, in one place, with its default for the embedded one-machine setup."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from loom_backend.domain import Role
from loom_backend.url_allow import DEFAULT_MIGRATOR_URL_ALLOW


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOM_", extra="ignore")

    data_dir: Path = Field(
        Path("data"), description="Where the SQLite file, the Temporal dev server's state and the demo repos live."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; PostgreSQL for production. Default: SQLite at {data_dir}/loom.db."
    )
    temporal_address: str | None = Field(
        None, description="host:port of an existing Temporal server; unset starts the embedded dev server."
    )
    redis_url: str | None = Field(
        None,
        description="Redis (redis://host:6379/0) for the board's page state, shared by several web replicas behind "
        "one LOOM_PUBLIC_URL; /api/readyz checks it. Unset: page state stays in the process.",
    )
    temporal_namespace: str = Field("default", description="Temporal namespace for Runs.")
    temporal_ui_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="Base URL of the Temporal Web UI (http://localhost:8233 for the embedded dev server); when set, "
        "each Candidate page links its Run's workflow there.",
    )
    temporal_task_queue: str = Field("loom-runs", description="Task queue the worker polls.")
    temporal_dev_port: int = Field(7233, description="Port of the embedded Temporal dev server.")
    run_worker: bool = Field(
        True, description="Run a worker inside the app process; false when `loom worker` processes run apart."
    )
    dispatch_retry_seconds: float = Field(
        6 * 3600,
        gt=0,
        description="How long a Run keeps retrying a Migrator that cannot be reached before it fails the Step "
        "(a 4xx answer fails it at once).",
    )
    dispatch_backoff_max_seconds: float = Field(
        300.0, gt=0, description="Longest wait between two dispatch attempts; waits double from 1 s up to this."
    )
    dispatch_max_attempts: int | None = Field(
        None, ge=1, description="Also fail the Step after this many attempts; unset: only the retry window counts."
    )
    dispatch_timeout_seconds: float = Field(10.0, description="HTTP timeout of one dispatch or dry-run call.")
    public_url: str = Field("http://localhost:3000", description="The URL operators and Migrators reach Loom at.")
    rollout_poll_seconds: float = Field(
        1.0, gt=0, description="How often a rollout looks at its Runs when nothing else wakes it."
    )
    open_pr_attention_hours: float = Field(24.0, description="An open PR older than this shows in Needs me.")
    stuck_factor: float = Field(
        3.0, gt=0, description="A Step in one status longer than this many times its p95 duration is stuck."
    )
    stuck_floor_seconds: float = Field(
        900.0,
        ge=0,
        description="A Step is never stuck before this long in one status (and this is the limit of a "
        "Step with no timed completion yet).",
    )
    demo: bool = Field(True, description="`loom up` also starts the demo Migrator.")
    demo_port: int = Field(8050, description="Port of the demo Migrator.")
    migrator_url_allow: str = Field(
        DEFAULT_MIGRATOR_URL_ALLOW,
        description="Hosts Loom may call as Migrators: comma-separated networks (10.0.0.0/8), names, *.wildcards or *. "
        "Link-local and cloud metadata addresses are refused regardless.",
    )
    webhook_url_allow: str = Field(
        "*",
        description="Hosts webhooks may post to, as LOOM_MIGRATOR_URL_ALLOW: networks, names, *.wildcards or * (any "
        "host); link-local and cloud metadata addresses are refused regardless. Only admins add webhooks.",
    )
    webhook_digest_seconds: float = Field(
        30.0, ge=0, description="A hook's events within this window after the first go out as one message."
    )
    webhook_digest_max_lines: int = Field(
        20, ge=1, description="Lines of events in a message's text; the rest are summed up as 'and N more'."
    )
    webhook_retry_seconds: float = Field(
        6 * 3600, gt=0, description="How long a message a receiver does not take (no answer, 5xx, 408, 429) is retried."
    )
    webhook_backoff_max_seconds: float = Field(
        300.0, gt=0, description="Longest wait between two attempts of one message; waits double from 1 s."
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="HTTP timeout of one webhook post.")
    auth_proxy_header: str | None = Field(
        None,
        description="Trust the user name an authenticating proxy puts in this header (e.g. X-Forwarded-User). "
        "Set it only when every request reaches Loom through that proxy.",
    )
    auth_proxy_default_role: Role = Field(Role.OPERATOR, description="Role of a proxy user without a Loom account.")
    session_hours: float = Field(12.0, gt=0, description="How long a sign-in lasts.")
    sign_in_failures_per_account: int = Field(
        10, ge=1, description="Failed sign-ins an account may have within the window before it must wait (429)."
    )
    sign_in_failures_per_client: int = Field(
        50, ge=1, description="Failed sign-ins one client address may have within the window before it must wait."
    )
    sign_in_window_seconds: float = Field(300.0, gt=0, description="The sliding window failed sign-ins count in.")
    sign_in_concurrency: int = Field(
        2, ge=1, description="Password checks (Argon2, ~64 MB each) run at once; more sign-ins wait their turn."
    )
    auth_remember_seconds: float = Field(
        5.0,
        ge=0,
        description="How long a valid token, a Migration's owner and its signing key are remembered between "
        "queries; a token revoked with the CLI stops working within this time. 0 asks the database every time.",
    )
    bootstrap_tokens: SecretStr | None = Field(
        None,
        description="Tokens to make valid at start: migrator:NAME=TOKEN and operator:NAME:ROLE=TOKEN, comma-separated "
        "(for deployments and tests that choose tokens up front; each at least 32 random characters).",
    )

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.lower().startswith("https://")

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'loom.db').as_posix()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
