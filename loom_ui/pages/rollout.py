"""Rollout (`/migrations/[migration_id]/rollout`): the policy a rollout follows, starting and steering it, the
inputs every Candidate shares, and bulk actions over everything that matches a filter (the board links here with
its own filter, so "act on all matching" means all of them, not the visible page)."""

from __future__ import annotations

from dataclasses import replace

import reflex as rx

from loom_backend import errors
from loom_backend.domain import CandidateStatus, ReadModelChange
from loom_backend.rollout import BulkAction, BulkRequest, CandidateFilter, RolloutPhase, RolloutStartRequest
from loom_ui import format as fmt
from loom_ui.components.forms import input_field
from loom_ui.components.layout import breadcrumb, crumb, empty_state, page, page_header
from loom_ui.state import LiveMixin, LoomState, error_text, service
from loom_ui.views.board import RolloutView, rollout_view
from loom_ui.views.common import InputField, entered, input_fields, with_error, with_value
from loom_ui.views.rollout import (
    ACTION_LABELS,
    FORM_FIELDS,
    PolicyForm,
    bulk_impact,
    bulk_progress,
    failed_outcomes,
    parse_policy,
    policy_form,
    refusal_field,
)

ACTIONS = [(a.value, label) for a, label in ACTION_LABELS.items()]
ANY = "any"  # a Radix select item needs a value: "any status"
STATUSES = [(ANY, "Any status"), *((s.value, fmt.status_label(s.value)) for s in CandidateStatus)]


class RolloutPageState(LiveMixin, LoomState):
    name: str = ""
    not_found: str = ""
    form: PolicyForm = PolicyForm()
    policy_errors: dict[str, str] = {}
    policy_saved: bool = False
    rollout: RolloutView = RolloutView()
    idle: bool = True
    inputs: list[InputField] = []
    busy: str = ""

    # The selection a rollout or a bulk action acts on: the board's filter.
    filter_status: str = ANY
    filter_kind: str = ""
    filter_text: str = ""
    filter_meta: str = ""  # key=value
    filter_attention: bool = False
    bulk_action: str = BulkAction.START.value
    bulk_impact: str = ""
    bulk_count: int = 0
    bulk_op: str = ""
    bulk_progress: str = ""
    bulk_refusals: list[str] = []

    _depends_on: dict[str, list[str]] = {}

    def _live_scope(self) -> str | None:
        return self.migration_id or None

    def _selection(self) -> CandidateFilter:
        key, _, value = self.filter_meta.partition("=")
        return CandidateFilter(
            status=CandidateStatus(self.filter_status) if self.filter_status not in ("", ANY) else None,
            kind=self.filter_kind.strip() or None,
            q=self.filter_text.strip() or None,
            metadata={key.strip(): value.strip()} if key.strip() and value.strip() else {},
            needs_attention=self.filter_attention,
        )

    async def _reload(self) -> None:
        status = await service().rollout_status(self._viewer(), self.migration_id)
        self.rollout = rollout_view(status)
        self.idle = status.state is RolloutPhase.IDLE or status.state.over
        if not self.policy_saved and status.policy is not None:
            self.form = policy_form(status.policy)
            self._depends_on = dict(status.policy.depends_on)
            self.policy_saved = True
        if self.bulk_op:
            operation = await service().get_bulk(self._viewer(), self.bulk_op)
            self.bulk_progress = bulk_progress(operation)
            self.bulk_refusals = failed_outcomes(operation)

    async def _reload_live(self, changes: list[ReadModelChange]) -> None:
        await self._reload()

    async def _refresh_nav(self) -> None:
        await self._count_needs_me()

    async def _reload_slow(self) -> None:
        """Again a moment after changes: a rollout writes its status a moment after the Runs it moved."""
        await self._reload()
        await self._refresh_nav()

    @rx.event
    async def load(self):
        if not await self._signed_in():
            return
        f = fmt.parse_board_query(self.router.url.query_parameters)
        self.filter_text, self.filter_kind, self.filter_attention = f.text, f.kind, f.attention
        self.filter_meta = next((f"{k}={v}" for k, v in f.metadata.items()), "")
        self.filter_status = self.router.url.query_parameters.get("status", "") or ANY
        self.not_found, self.policy_saved, self.policy_errors = "", False, {}
        self.bulk_impact, self.bulk_op, self.bulk_progress, self.bulk_refusals = "", "", "", []
        try:
            who, mid = self._viewer(), self.migration_id
            migration = await service().get_migration(who, mid, with_candidates=False)
            self.name = migration.name
            self.inputs = input_fields(migration.required_inputs, await service().get_migration_inputs(who, mid))
            self.form = PolicyForm()
            await self._reload()
            await self._count_needs_me()
        except Exception as exc:
            self.not_found = error_text(exc)
        self.loading = False

    # -- the policy and the rollout ------------------------------------------------------------

    @rx.event
    def set_policy_field(self, name: str, value: str):
        if name in FORM_FIELDS:
            self.form = replace(self.form, **{name: value})
            self.policy_errors = {k: v for k, v in self.policy_errors.items() if k != name}

    @rx.event
    async def save_policy(self):
        policy, refusals = parse_policy(self.form, self._depends_on)
        self.policy_errors = refusals
        if policy is None:
            return None
        try:
            await service().set_rollout_policy(await self._actor(), self.migration_id, policy)
        except errors.InvalidPolicy as exc:
            self.policy_errors = {refusal_field(str(exc)) or "max_running": str(exc)}
            return None
        except Exception as exc:
            return rx.toast.error(error_text(exc), duration=8000)
        self.policy_saved = True
        await self._reload()
        return rx.toast.success("Rollout policy saved")

    @rx.event
    async def start_rollout(self):
        if self.busy:
            return None
        self.busy = "start-rollout"
        try:
            status = await service().start_rollout(
                await self._actor(), self.migration_id, RolloutStartRequest(filter=self._selection())
            )
            await self._reload()
            return rx.toast.success(f"Rollout started over {fmt.plural(status.counts.queued, 'Candidate')}")
        except Exception as exc:
            return rx.toast.error(error_text(exc), duration=8000)
        finally:
            self.busy = ""

    @rx.event
    async def rollout_act(self, action: str):
        if self.busy:
            return None
        self.busy = f"rollout-{action}"
        try:
            await service().rollout_action(await self._actor(), self.migration_id, action)
            await self._reload()
        except Exception as exc:
            return rx.toast.error(error_text(exc), duration=8000)
        finally:
            self.busy = ""
        return None

    # -- inputs every Candidate shares --------------------------------------------------------

    @rx.event
    def set_input(self, name: str, value: str):
        self.inputs = with_value(self.inputs, name, value)

    @rx.event
    async def save_inputs(self):
        values = {i.name: i.value.strip() for i in self.inputs}  # an emptied one is removed
        try:
            saved = await service().update_migration_inputs(await self._actor(), self.migration_id, values)
        except errors.LoomError as exc:
            shown = with_error(self.inputs, getattr(exc, "field", None), str(exc))
            if shown is None:
                return rx.toast.error(error_text(exc), duration=8000)
            self.inputs = shown
            return None
        self.inputs = [replace(i, value=saved.get(i.name, ""), error="") for i in self.inputs]
        return rx.toast.success(f"Inputs saved for every Candidate ({len(entered(self.inputs))} set)")

    # -- bulk actions --------------------------------------------------------------------------

    @rx.event
    def set_selection(self, name: str, value: str):
        if name in ("filter_status", "filter_kind", "filter_text", "filter_meta", "bulk_action"):
            setattr(self, name, value)
            self.bulk_impact, self.bulk_count = "", 0

    @rx.event
    def set_attention(self, value: bool):
        self.filter_attention = value
        self.bulk_impact, self.bulk_count = "", 0

    def _bulk_request(self, dry_run: bool) -> BulkRequest:
        return BulkRequest(action=BulkAction(self.bulk_action), filter=self._selection(), dry_run=dry_run)

    @rx.event
    async def preview_bulk(self):
        try:
            operation = await service().bulk(await self._actor(), self.migration_id, self._bulk_request(True))
        except Exception as exc:
            return rx.toast.error(error_text(exc), duration=8000)
        self.bulk_impact = bulk_impact(operation)
        self.bulk_count = sum(1 for o in operation.outcomes if o.outcome == "pending")
        return None

    @rx.event
    async def run_bulk(self):
        if self.busy or not self.bulk_count:
            return None
        self.busy = "bulk"
        try:
            operation = await service().bulk(await self._actor(), self.migration_id, self._bulk_request(False))
            self.bulk_op = operation.id
            self.bulk_impact, self.bulk_count = "", 0
            await self._reload()
        except Exception as exc:
            return rx.toast.error(error_text(exc), duration=8000)
        finally:
            self.busy = ""
        return None


# -- view ---------------------------------------------------------------------------------

S = RolloutPageState


def _field(label: str, name: str, hint: str, **props) -> rx.Component:
    error = S.policy_errors.get(name, "")
    return rx.vstack(
        rx.el.label(rx.text(label, size="2", weight="medium"), html_for=f"policy-{name}"),
        rx.input(
            value=getattr(S.form, name),
            on_change=lambda v: S.set_policy_field(name, v),
            id=f"policy-{name}",
            aria_describedby=f"policy-{name}-help",
            aria_invalid=rx.cond(error != "", "true", "false"),
            color_scheme=rx.cond(error != "", "red", "gray"),
            width="100%",
            data_testid=f"policy-{name}",
            **props,
        ),
        rx.text(hint, size="1", color=rx.color("gray", 11), id=f"policy-{name}-help"),
        rx.cond(
            error != "",
            rx.text(error, size="1", color=rx.color("red", 11), role="alert", data_testid=f"policy-error-{name}"),
        ),
        spacing="1",
        width="100%",
    )


def _policy_card() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("Policy", size="4", as_="h2"),
            rx.grid(
                _field("Max running", "max_running", "Runs open at once, across the Migration", input_mode="numeric"),
                _field(
                    "Starts per hour",
                    "starts_per_hour",
                    "Optional: at most this many starts an hour",
                    input_mode="numeric",
                ),
                _field("Per-group key", "group_key", "Optional metadata key, say owner"),
                _field("Per-group max", "group_max", "Open Runs per value of that key", input_mode="numeric"),
                _field("Waves", "waves", "Counts or percentages, say 3, 10%, 100%; empty: one wave"),
                rx.vstack(
                    rx.el.label(rx.text("Gate between waves", size="2", weight="medium"), html_for="policy-gate"),
                    rx.select.root(
                        rx.select.trigger(id="policy-gate", width="100%", data_testid="policy-gate"),
                        rx.select.content(
                            rx.select.item("Manual: wait for Promote", value="manual"),
                            rx.select.item("Auto: after the soak, with no failed Step", value="auto"),
                        ),
                        value=S.form.gate,
                        on_change=lambda v: S.set_policy_field("gate", v),
                    ),
                    spacing="1",
                    width="100%",
                ),
                _field(
                    "Soak minutes", "soak_minutes", "An auto gate waits this long after a wave", input_mode="decimal"
                ),
                _field("Order by", "order", "Optional metadata key to start Candidates in its order"),
                _field(
                    "Pause after failures",
                    "pause_after_failures",
                    "Optional: the rollout pauses itself after this many failed Runs",
                    input_mode="numeric",
                ),
                _field(
                    "Automatic retries",
                    "retry_attempts",
                    "Optional: the rollout retries a failed Step itself this many times; only a failure left after "
                    "them counts for the breaker",
                    input_mode="numeric",
                ),
                _field(
                    "Retry after minutes",
                    "retry_after_minutes",
                    "How long after a failure the rollout retries it",
                    input_mode="decimal",
                ),
                _field(
                    "Auto-approve Step",
                    "approve_step",
                    "Optional: a manual-review Step the rollout approves itself as Runs reach it",
                ),
                _field(
                    "Auto-approve from wave",
                    "approve_from_wave",
                    "Wave number, 1 the first; earlier waves are reviewed by hand",
                    input_mode="numeric",
                ),
                columns=rx.breakpoints(initial="1", sm="2", lg="3"),
                spacing="4",
                width="100%",
            ),
            rx.hstack(
                rx.button(
                    "Save policy", on_click=S.save_policy, disabled=~LoomState.can_operate, data_testid="policy-save"
                ),
                rx.cond(
                    S.rollout.shown,
                    rx.text("A running rollout takes the new policy at once.", size="1", color=rx.color("gray", 11)),
                ),
                spacing="3",
                align="center",
            ),
            spacing="4",
            width="100%",
        ),
        width="100%",
        data_testid="policy-card",
    )


def _select(id_: str, options: list[tuple[str, str]], value: rx.Var[str], on_change) -> rx.Component:
    return rx.select.root(
        rx.select.trigger(id=id_, width="100%", data_testid=id_),
        rx.select.content(*[rx.select.item(label, value=v) for v, label in options]),
        value=value,
        on_change=on_change,
    )


def _selection_card() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("Selection", size="4", as_="h2"),
            rx.text(
                "The Candidates a rollout starts and a bulk action acts on: every one that matches, not only those on "
                "the board's screen.",
                size="2",
                color=rx.color("gray", 11),
            ),
            _selection_fields(),
            spacing="3",
            width="100%",
        ),
        width="100%",
        data_testid="selection-card",
    )


def _selection_fields() -> rx.Component:
    def text(label: str, name: str, placeholder: str) -> rx.Component:
        return rx.vstack(
            rx.el.label(rx.text(label, size="2", weight="medium"), html_for=f"selection-{name}"),
            rx.input(
                value=getattr(S, name),
                on_change=lambda v: S.set_selection(name, v),
                id=f"selection-{name}",
                placeholder=placeholder,
                width="100%",
                data_testid=f"selection-{name}",
            ),
            spacing="1",
            width="100%",
        )

    return rx.grid(
        rx.vstack(
            rx.el.label(rx.text("Status", size="2", weight="medium"), html_for="selection-status"),
            _select("selection-status", STATUSES, S.filter_status, lambda v: S.set_selection("filter_status", v)),
            spacing="1",
            width="100%",
        ),
        text("Kind", "filter_kind", "any kind"),
        text("Text in id or metadata", "filter_text", "anything"),
        text("Metadata", "filter_meta", "owner=team-a"),
        rx.el.label(
            rx.hstack(
                rx.checkbox(checked=S.filter_attention, on_change=S.set_attention, data_testid="selection-attention"),
                rx.text("Only those needing attention", size="2"),
                spacing="2",
                align="center",
            ),
        ),
        columns=rx.breakpoints(initial="1", sm="2", lg="4"),
        spacing="3",
        width="100%",
    )


def _rollout_button(label: str, action: str, shown: rx.Var[bool]) -> rx.Component:
    return rx.cond(
        shown & LoomState.can_operate,
        rx.button(
            label,
            variant="soft",
            on_click=S.rollout_act(action),
            loading=S.busy == f"rollout-{action}",
            disabled=S.busy != "",
            data_testid=f"rollout-page-{action}",
        ),
    )


def _rollout_card() -> rx.Component:
    r = S.rollout
    return rx.card(
        rx.vstack(
            rx.heading("Rollout", size="4", as_="h2"),
            rx.cond(
                r.shown,
                rx.vstack(
                    rx.hstack(
                        rx.badge(r.state_label, color_scheme=r.color, data_testid="rollout-page-state"),
                        rx.text(r.wave, size="2"),
                        spacing="3",
                        wrap="wrap",
                    ),
                    rx.text(r.counts, size="2", data_testid="rollout-page-counts"),
                    rx.cond(r.reason != "", rx.text(r.reason, size="2", color=rx.color("amber", 11))),
                    rx.hstack(
                        _rollout_button("Promote", "promote", r.can_promote),
                        _rollout_button("Pause", "pause", r.can_pause),
                        _rollout_button("Resume", "resume", r.can_resume),
                        _rollout_button("Stop", "stop", r.can_stop),
                        spacing="2",
                    ),
                    spacing="2",
                ),
                rx.text(
                    "No rollout yet: save a policy, then start it over the Candidates below.",
                    size="2",
                    color=rx.color("gray", 11),
                ),
            ),
            rx.cond(
                S.idle,
                rx.hstack(
                    rx.text("Starts every not-started Candidate of the selection.", size="2"),
                    rx.button(
                        "Start rollout",
                        on_click=S.start_rollout,
                        loading=S.busy == "start-rollout",
                        disabled=~LoomState.can_operate | ~S.policy_saved,
                        data_testid="rollout-start",
                    ),
                    spacing="3",
                    width="100%",
                ),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
        data_testid="rollout-card",
    )


def _inputs_card() -> rx.Component:
    return rx.cond(
        S.inputs.length() > 0,
        rx.card(
            rx.vstack(
                rx.heading("Inputs for every Candidate", size="4", as_="h2"),
                rx.text(
                    "A Candidate's own value wins over these. Empty a value to remove it.",
                    size="2",
                    color=rx.color("gray", 11),
                ),
                rx.foreach(S.inputs, lambda i: input_field(i, lambda v: S.set_input(i.name, v))),
                rx.button(
                    "Save inputs", on_click=S.save_inputs, disabled=~LoomState.can_operate, data_testid="inputs-save"
                ),
                spacing="3",
                width="100%",
            ),
            width="100%",
            data_testid="inputs-card",
        ),
    )


def _bulk_card() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("Bulk action", size="4", as_="h2"),
            rx.text(
                "On every Candidate of the selection; the preview says what it would do first.",
                size="2",
                color=rx.color("gray", 11),
            ),
            rx.hstack(
                rx.el.label(rx.text("Action", size="2", weight="medium"), html_for="bulk-action"),
                _select("bulk-action", ACTIONS, S.bulk_action, lambda v: S.set_selection("bulk_action", v)),
                rx.button(
                    "Preview",
                    variant="soft",
                    on_click=S.preview_bulk,
                    disabled=~LoomState.can_operate,
                    data_testid="bulk-preview",
                ),
                spacing="3",
                align="center",
                wrap="wrap",
            ),
            rx.cond(
                S.bulk_impact != "",
                rx.hstack(
                    rx.text(S.bulk_impact, size="2", weight="medium", data_testid="bulk-impact"),
                    rx.button(
                        "Go: act on " + S.bulk_count.to_string(),
                        on_click=S.run_bulk,
                        disabled=S.bulk_count == 0,
                        loading=S.busy == "bulk",
                        data_testid="bulk-run",
                    ),
                    spacing="3",
                    align="center",
                    wrap="wrap",
                ),
            ),
            rx.cond(S.bulk_progress != "", rx.text(S.bulk_progress, size="2", data_testid="bulk-progress")),
            rx.foreach(S.bulk_refusals, lambda line: rx.text(line, size="1", color=rx.color("red", 11))),
            spacing="3",
            width="100%",
        ),
        width="100%",
        data_testid="bulk-card",
    )


def rollout_page() -> rx.Component:
    board = "/migrations/" + S.migration_id
    return page(
        breadcrumb(crumb("Migrations", "/"), crumb(S.name, board), rx.text("Rollout", size="2", weight="medium")),
        rx.cond(
            S.not_found != "",
            empty_state(
                "circle-help",
                "This Migration is not here",
                rx.text(S.not_found, size="2"),
                rx.link("Back to Migrations", href="/"),
            ),
            rx.vstack(
                page_header(
                    rx.heading("Rollout · ", S.name, size="6", as_="h1"),
                    "Start Runs by policy, in waves with gates, and act on many Candidates at once.",
                ),
                _selection_card(),
                _rollout_card(),
                _policy_card(),
                _inputs_card(),
                _bulk_card(),
                spacing="4",
                width="100%",
            ),
        ),
    )
