"""The rollout page's forms: a rollout policy as an operator types it, and a bulk action's impact in one sentence."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields

from pydantic import ValidationError

from loom_backend.rollout import BulkAction, BulkOperation, BulkOutcomeKind, BulkState, RolloutPolicy


@dataclass
class PolicyForm:
    """The policy's fields as text, the way the form shows and edits them."""

    max_running: str = "10"
    starts_per_hour: str = ""
    group_key: str = ""
    group_max: str = ""
    waves: str = ""
    gate: str = "manual"
    soak_minutes: str = "0"
    order: str = ""
    pause_after_failures: str = ""
    retry_attempts: str = ""
    retry_after_minutes: str = "0"
    approve_step: str = ""
    approve_from_wave: str = "2"


# The form's field -> the policy's JSON field a refusal names (422s say `maxRunning: ...`).
WIRE_NAMES = {
    "max_running": "maxRunning",
    "starts_per_hour": "startsPerHour",
    "group_key": "maxRunningPerGroup",
    "group_max": "maxRunningPerGroup",
    "waves": "waves",
    "gate": "gate",
    "soak_minutes": "soakMinutes",
    "order": "order",
    "pause_after_failures": "pauseAfterFailures",
    "retry_attempts": "autoRetry.attempts",
    "retry_after_minutes": "autoRetry.afterMinutes",
    "approve_step": "autoApprove.step",
    "approve_from_wave": "autoApprove.fromWave",
}
FORM_FIELDS = [f.name for f in fields(PolicyForm)]


def policy_form(policy: RolloutPolicy | None) -> PolicyForm:
    if policy is None:
        return PolicyForm()
    group = policy.max_running_per_group
    retry, approve = policy.auto_retry, policy.auto_approve
    return PolicyForm(
        max_running=str(policy.max_running),
        starts_per_hour=str(policy.starts_per_hour or ""),
        group_key=group.key if group else "",
        group_max=str(group.max) if group else "",
        waves=", ".join(str(w) for w in policy.waves),
        gate=policy.gate.value,
        soak_minutes=f"{policy.soak_minutes:g}",
        order=policy.order or "",
        pause_after_failures=str(policy.pause_after_failures or ""),
        retry_attempts=str(retry.attempts) if retry else "",
        retry_after_minutes=f"{retry.after_minutes:g}" if retry else "0",
        approve_step=approve.step if approve else "",
        approve_from_wave=str(approve.from_wave) if approve else "2",
    )


def _number(text: str) -> int | str | None:
    text = text.strip()
    if not text:
        return None
    return int(text) if text.isdigit() else text  # not a number: the policy's own check says so


def parse_policy(form: PolicyForm, depends_on: dict[str, list[str]]) -> tuple[RolloutPolicy | None, dict[str, str]]:
    """The policy the form describes, or the refusals by form field; `depends_on` (set through the API) is kept."""
    refusals: dict[str, str] = {}
    group_key, group_max = form.group_key.strip(), _number(form.group_max)
    if bool(group_key) != (group_max is not None):
        refusals["group_key"] = "A per-group cap needs both a metadata key and a maximum"
    attempts, approve_step = _number(form.retry_attempts), form.approve_step.strip()
    after = form.retry_after_minutes.strip() or 0
    from_wave = _number(form.approve_from_wave)
    if attempts is None and after not in (0, "0"):
        refusals["retry_attempts"] = "Say how many automatic retries a Step gets, or clear the minutes"
    raw: dict[str, object] = {
        "maxRunning": _number(form.max_running),
        "startsPerHour": _number(form.starts_per_hour),
        "maxRunningPerGroup": {"key": group_key, "max": group_max} if group_key and group_max is not None else None,
        "waves": [_number(w) for w in form.waves.split(",") if w.strip()],
        "gate": form.gate,
        "soakMinutes": form.soak_minutes.strip() or 0,
        "order": form.order.strip() or None,
        "pauseAfterFailures": _number(form.pause_after_failures),
        "autoRetry": {"attempts": attempts, "afterMinutes": after} if attempts is not None else None,
        "autoApprove": {"step": approve_step, "fromWave": 2 if from_wave is None else from_wave}
        if approve_step
        else None,
        "dependsOn": depends_on,
    }
    if raw["maxRunning"] is None:
        refusals["max_running"] = "Say how many Runs may be open at once"
    if refusals:
        return None, refusals
    try:
        return RolloutPolicy.model_validate(raw), {}
    except ValidationError as exc:
        for error in exc.errors():
            loc = [str(part) for part in error["loc"]]
            if loc[:1] == ["maxRunningPerGroup"]:
                name = "group_max" if loc[1:2] == ["max"] else "group_key"
            else:
                wire = ".".join(loc[:2]) if loc[:1] in (["autoRetry"], ["autoApprove"]) else loc[0]
                name = next((f for f, w in WIRE_NAMES.items() if w == wire), "max_running")
            message = "Give a whole number" if error["type"] == "int_parsing" else error["msg"]
            refusals.setdefault(name, message.removeprefix("Value error, "))
        return None, refusals


def refusal_field(message: str) -> str:
    """The form field a service refusal names (`maxRunningPerGroup: ...`), or "" when it names none."""
    wire = message.split(":")[0].split(" ")[0]
    return next((f for f, w in WIRE_NAMES.items() if w == wire), "")


VERBS = {
    BulkAction.START: "starts",
    BulkAction.CANCEL: "cancels",
    BulkAction.RETRY: "retries",
    BulkAction.APPROVE: "approves",
    BulkAction.REJECT: "rejects",
    BulkAction.MARK_MERGED: "marks as merged",
    BulkAction.DRIFT_CHECK: "checks for drift",
}
# What the bulk action menu says for each action, in its order.
ACTION_LABELS = {
    BulkAction.START: "Start",
    BulkAction.CANCEL: "Cancel",
    BulkAction.RETRY: "Retry the failed Step",
    BulkAction.APPROVE: "Approve",
    BulkAction.REJECT: "Reject",
    BulkAction.MARK_MERGED: "Mark as merged",
    BulkAction.DRIFT_CHECK: "Check drift (completed)",
}


def bulk_impact(operation: BulkOperation) -> str:
    """What a previewed bulk action would do: "starts 143; skips 12: already running; skips 3: lacks input X"."""
    todo = sum(1 for o in operation.outcomes if o.outcome is BulkOutcomeKind.PENDING)
    skipped = Counter(o.message or "does not fit" for o in operation.outcomes if o.outcome is BulkOutcomeKind.SKIPPED)
    parts = [f"{VERBS[operation.action]} {todo:,}"]
    parts += [f"skips {n:,}: {why}" for why, n in skipped.most_common()]
    return "; ".join(parts)


def bulk_progress(operation: BulkOperation) -> str:
    """A running or finished bulk operation, as its progress line says it."""
    counts = Counter(o.outcome for o in operation.outcomes)
    acted = counts[BulkOutcomeKind.DONE] + counts[BulkOutcomeKind.FAILED]
    total = acted + counts[BulkOutcomeKind.PENDING]
    head = "Done" if operation.state is BulkState.DONE else "Working"
    line = f"{head}: {acted:,} of {total:,} Candidates"
    if counts[BulkOutcomeKind.FAILED]:
        line += f" · {counts[BulkOutcomeKind.FAILED]:,} refused"
    if counts[BulkOutcomeKind.SKIPPED]:
        line += f" · {counts[BulkOutcomeKind.SKIPPED]:,} skipped"
    return line


def failed_outcomes(operation: BulkOperation, limit: int = 20) -> list[str]:
    """The first refusals of a bulk operation, "candidate: why", for the operator to follow up."""
    return [
        f"{o.candidate_id}: {o.message or 'refused'}" for o in operation.outcomes if o.outcome is BulkOutcomeKind.FAILED
    ][:limit]
