"""Typed errors the service raises. Only the HTTP layer turns them into status codes."""

from __future__ import annotations


class LoomError(Exception):
    """Base of every error an operator or a Migrator can act on; the message says what to do."""


class NotFound(LoomError):
    pass


class MigrationNotFound(NotFound):
    def __init__(self, migration_id: str) -> None:
        super().__init__(f"Migration {migration_id!r} is not registered; a Migrator must announce it first")
        self.migration_id = migration_id


class CandidateNotFound(NotFound):
    def __init__(self, migration_id: str, candidate_id: str) -> None:
        super().__init__(f"Candidate {candidate_id!r} is not part of Migration {migration_id!r}")
        self.migration_id = migration_id
        self.candidate_id = candidate_id


class RunNotFound(NotFound):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"Run {run_id!r} does not exist or has ended; stop sending events for it")
        self.run_id = run_id


class Conflict(LoomError):
    """The request is valid but the Run or Candidate is not in a state that allows it."""


class CandidateAlreadyStarted(Conflict):
    def __init__(self, candidate_id: str, status: str) -> None:
        super().__init__(f"Candidate {candidate_id!r} is already {status}; cancel it first to start again")


class CandidateNotRunning(Conflict):
    def __init__(self, candidate_id: str) -> None:
        super().__init__(f"Candidate {candidate_id!r} has no Run in progress")


class CandidateNotCompleted(Conflict):
    def __init__(self, candidate_id: str) -> None:
        super().__init__(f"Candidate {candidate_id!r} is not completed; only a completed Candidate can drift")


class RolloutConflict(Conflict):
    """The rollout is not in a state that allows this (none running, already running, not waiting for Promote)."""


class RolloutNotRunning(RolloutConflict):
    def __init__(self, migration_id: str) -> None:
        super().__init__(f"Migration {migration_id!r} has no rollout in progress; start one first")


class StepNotInState(Conflict):
    """A Step action (retry, approve, mark merged, callback) does not fit the Step's status."""


class InvalidInput(LoomError):
    """Well-formed JSON whose content breaks a rule (missing required inputs, unknown keys)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidPolicy(InvalidInput):
    """A rollout policy that cannot run over this Migration: an unknown key or Candidate, a dependency cycle."""


class DriftNotChecked(NotFound):
    def __init__(self, candidate_id: str) -> None:
        super().__init__(f"Candidate {candidate_id!r} has no drift check since it completed; run one (drift_check)")


class BulkOperationNotFound(NotFound):
    def __init__(self, op_id: str) -> None:
        super().__init__(f"Bulk operation {op_id!r} does not exist")


class SavedViewNotFound(NotFound):
    def __init__(self, migration_id: str, name: str) -> None:
        super().__init__(f"Migration {migration_id!r} has no saved view {name!r}")


class WebhookNotFound(NotFound):
    def __init__(self, hook_id: str) -> None:
        super().__init__(f"No webhook {hook_id!r}; see GET /api/webhooks (or `loom webhook list`)")


class MigratorUnavailable(LoomError):
    """The Migrator could not be reached or answered something Loom cannot read."""


class Unauthenticated(LoomError):
    """No credentials, or credentials Loom does not recognise: sign in, or send a valid token."""


class Forbidden(LoomError):
    """The caller is known but may not do this: a role too low, or a Migration another token owns."""


class CrossSiteRequest(Forbidden):
    """A state-changing request carried the session cookie but came from a page that is not Loom's (CSRF)."""


class TooManySignIns(LoomError):
    """Too many failed sign-ins for this account or from this address lately; try again after a while."""

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class ServiceUnavailable(LoomError):
    """Something Loom depends on (Temporal, its database) is down; the same request may work later."""

    def __init__(self, message: str, retry_after_seconds: int = 5) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
