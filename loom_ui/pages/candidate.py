"""Candidate (`/migrations/[migration_id]/candidates/[candidate_id]`): the live Step timeline and its actions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import reflex as rx

from loom_backend import errors
from loom_backend.domain import (
    MAX_COMMENT_LENGTH,
    CandidateStatus,
    Principal,
    run_id,
    steps_for,
    text_refusal,
)
from loom_ui import format as fmt
from loom_ui.components.access import operator_only, viewer_locked
from loom_ui.components.details import file_list, key_values, section
from loom_ui.components.dialog import confirm_dialog, dialog
from loom_ui.components.forms import field_error, input_field
from loom_ui.components.layout import breadcrumb, crumb, empty_state, link_button, page, page_header, skeleton_rows
from loom_ui.components.status import status_badge
from loom_ui.components.timeline import event_row, timeline_step
from loom_ui.pages.preview import diff_file
from loom_ui.state import LiveMixin, LoomState, error_text, service
from loom_ui.views.candidate import (
    EventView,
    FileGroupView,
    LeftPR,
    StepView,
    drift_summary,
    event_view,
    file_groups,
    left_open_prs,
    step_views,
)
from loom_ui.views.common import InputField, MetaPair, entered, has_errors, input_fields, with_error, with_value
from loom_ui.views.preview import FilePreview, step_previews

EVENTS_PAGE = 50
# Enough of a cancelled Run's history to find the PRs it left open.
LEFT_BEHIND_EVENTS = 1_000
COMMENT_LIMIT_TEXT = f"Optional; at most {MAX_COMMENT_LENGTH:,} characters."


class CandidateState(LiveMixin, LoomState):
    migration_name: str = ""
    kind: str = ""
    status: str = ""
    status_label: str = ""
    status_color: str = "gray"
    meta: list[MetaPair] = []
    saved_inputs: list[MetaPair] = []
    steps: list[StepView] = []
    events: list[EventView] = []
    events_total: int = 0
    events_showing: str = ""
    files: list[FileGroupView] = []
    inputs: list[InputField] = []
    left_behind: list[LeftPR] = []
    not_found: str = ""
    # The Run's workflow id (its RunID) and, when LOOM_TEMPORAL_UI_URL is set, its page in the Temporal Web UI.
    workflow_id: str = ""
    workflow_url: str = ""
    # The last drift check of a completed Candidate: none, clean, or drifted with the files its dry run still changes.
    drift_state: str = ""
    drift_text: str = ""
    drift_files: list[FilePreview] = []

    busy: str = ""
    inputs_open: bool = False
    inputs_mode: str = "start"
    cancel_open: bool = False
    comment: str = ""
    _loaded_for: str = ""
    _events_limit: int = EVENTS_PAGE

    def _live_scope(self) -> str | None:
        return self.migration_id or None

    @rx.var
    def comment_error(self) -> str:
        return text_refusal("The comment", self.comment, MAX_COMMENT_LENGTH) or ""

    @rx.var
    def comment_count(self) -> str:
        return f"{len(self.comment):,} / {MAX_COMMENT_LENGTH:,}"

    @rx.var
    def inputs_have_errors(self) -> bool:
        return has_errors(self.inputs)

    def _live_candidate(self) -> str | None:
        return self.candidate_id or None

    async def _reload(self) -> None:
        mid, cid = self.migration_id, self.candidate_id
        now = datetime.now(UTC)
        who = self._viewer()
        migration = await service().get_migration(who, mid, with_candidates=False)
        candidate = await service().get_candidate(who, mid, cid)
        saved = await service().get_inputs(who, mid, cid)
        try:
            results = (await service().candidate_steps(who, mid, cid)).steps
        except errors.RunNotFound:
            results = []
        events = await service().list_events(who, mid, candidate_id=cid, limit=self._events_limit)
        found = (await service().list_candidates(who, mid, candidate_id=cid, limit=1)).candidates
        stuck_step = found[0].current_step if found and found[0].stuck else None
        self.migration_name = migration.name
        self.kind = candidate.kind
        self.status = candidate.status.value
        self.status_label = fmt.status_label(candidate.status.value)
        self.status_color = fmt.status_color(candidate.status.value)
        self.meta = [MetaPair(k, v) for k, v in candidate.metadata.items()]
        self.saved_inputs = [MetaPair(k, v) for k, v in sorted(saved.items())]
        self.steps = step_views(
            steps_for(candidate, migration.steps),
            results,
            candidate.status,
            now,
            migration_plan=migration.steps,
            values={"id": cid, **candidate.metadata, **saved},
            stuck_step=stuck_step,
        )
        self.left_behind = []
        if candidate.status == CandidateStatus.NOT_STARTED and events.total:
            history = await service().list_events(who, mid, candidate_id=cid, limit=LEFT_BEHIND_EVENTS)
            self.left_behind = left_open_prs(history.events)
        self.events = [event_view(e, now) for e in events.events]
        self.events_total = events.total
        self.events_showing = fmt.showing(len(events.events), events.total, "event")
        self.files = file_groups(candidate)
        drift = await service().get_drift(who, mid, cid) if candidate.status == CandidateStatus.COMPLETED else None
        self.drift_state = "" if drift is None else ("drifted" if drift.drifted else "clean")
        self.drift_text = drift_summary(drift, now) if drift else ""
        self.drift_files = [f for s in step_previews(drift.result) if not s.skipped for f in s.files] if drift else []
        self.workflow_id = run_id(mid, cid) if events.total else ""
        self.workflow_url = (service().workflow_url(self.workflow_id) or "") if self.workflow_id else ""
        if not self.inputs_open:
            self.inputs = input_fields(migration.required_inputs, saved, candidate.metadata)

    async def _refresh_nav(self) -> None:
        await self._count_needs_me()

    @rx.event
    async def load(self):
        if not await self._signed_in():
            return
        self.not_found = ""
        self.inputs_open = self.cancel_open = False
        self.comment = ""
        key = f"{self.migration_id}/{self.candidate_id}"
        if self._loaded_for != key:
            self._loaded_for = key
            self._events_limit = EVENTS_PAGE
            self.loading = True
            self.steps, self.events, self.files, self.meta, self.inputs = [], [], [], [], []
            yield
        try:
            await self._reload()
            await self._count_needs_me()
        except Exception as exc:
            self.not_found = error_text(exc)
        self.loading = False

    @rx.event
    async def show_more_events(self):
        self._events_limit += EVENTS_PAGE
        await self._reload()

    # -- dialogs ------------------------------------------------------------------------------

    @rx.event
    def set_inputs_open(self, value: bool):
        self.inputs_open = value

    @rx.event
    def set_cancel_open(self, value: bool):
        self.cancel_open = value

    @rx.event
    def set_comment(self, value: str):
        self.comment = value

    @rx.event
    def set_input(self, name: str, value: str):
        self.inputs = with_value(self.inputs, name, value)

    @rx.event
    def open_inputs(self, mode: str):
        self.inputs_mode = mode
        self.inputs_open = True

    # -- actions: one request at a time, with a toast either way ------------------------------

    async def _act(self, key: str, call: Callable[[str, str, Principal], Awaitable[None]], done: str):
        """Run `call(migration, candidate, principal)` as the signed-in operator; viewers are refused here too."""
        async with self:
            if self.busy:
                return None
            self.busy = key
            mid, cid = self.migration_id, self.candidate_id
        try:
            async with self:
                who = await self._actor()
            await call(mid, cid, who)
        except errors.InvalidInput as exc:
            async with self:
                self.busy = ""
                shown = with_error(self.inputs, exc.field, str(exc))
                if shown is not None:
                    self.inputs = shown
                    return None
            return rx.toast.error(error_text(exc), duration=8000)
        except Exception as exc:
            async with self:
                self.busy = ""
            return rx.toast.error(error_text(exc), duration=8000)
        async with self:
            self.busy = ""
            self.inputs_open = self.cancel_open = False
            self.comment = ""
            try:
                await self._reload()
            except Exception as exc:
                return rx.toast.error(error_text(exc))
        return rx.toast.success(done)

    @rx.event(background=True)
    async def start(self):
        async with self:
            inputs = entered(self.inputs)
        return await self._act("start", lambda mid, cid, who: service().start_run(who, mid, cid, inputs), "Run started")

    @rx.event(background=True)
    async def save_inputs(self):
        async with self:
            inputs = entered(self.inputs)
        return await self._act(
            "inputs", lambda mid, cid, who: service().update_inputs(who, mid, cid, inputs), "Inputs saved"
        )

    @rx.event(background=True)
    async def check_drift(self):
        return await self._act(
            "drift", lambda mid, cid, who: service().check_drift(who, mid, cid), "Drift checked: dry run run again"
        )

    @rx.event(background=True)
    async def cancel(self):
        return await self._act("cancel", lambda mid, cid, who: service().cancel_run(who, mid, cid), "Run cancelled")

    @rx.event(background=True)
    async def retry(self, step: str):
        return await self._act(
            f"retry:{step}", lambda mid, cid, who: service().retry_step(who, mid, cid, step), f"Retrying {step}"
        )

    @rx.event(background=True)
    async def review(self, step: str, approved: bool):
        async with self:
            if self.comment_error:
                return None
            comment = self.comment.strip() or None
        return await self._act(
            f"{'approve' if approved else 'reject'}:{step}",
            lambda mid, cid, who: service().review_step(who, mid, cid, step, approved, comment),
            f"{step} {'approved' if approved else 'rejected'}",
        )

    @rx.event(background=True)
    async def mark_merged(self, step: str):
        return await self._act(
            f"merged:{step}",
            lambda mid, cid, who: service().mark_merged(who, mid, cid, step),
            f"{step} marked as merged",
        )


# -- view ---------------------------------------------------------------------------------

S = CandidateState


def _action_button(label, icon: str, key, on_click, testid: str, blocked=False, **props) -> rx.Component:
    return operator_only(
        rx.button(
            rx.icon(icon, size=14),
            label,
            on_click=on_click,
            loading=S.busy == key,
            disabled=viewer_locked((S.busy != "") | blocked),
            data_testid=testid,
            **props,
        )
    )


def _step_actions(s: StepView) -> rx.Component:
    return rx.fragment(
        rx.cond(
            s.can_retry,
            _action_button("Retry", "rotate-ccw", "retry:" + s.name, S.retry(s.name), "retry-step", size="2"),
        ),
        rx.cond(
            s.can_mark_merged,
            _action_button(
                "Mark as merged",
                "git-merge",
                "merged:" + s.name,
                S.mark_merged(s.name),
                "mark-merged",
                size="2",
                variant="soft",
            ),
        ),
        rx.cond(
            s.can_review,
            rx.vstack(
                rx.el.label(rx.text("Comment", size="2", weight="medium"), html_for="review-comment"),
                rx.text_area(
                    value=S.comment,
                    on_change=S.set_comment,
                    placeholder="What you checked, or why you reject",
                    width="100%",
                    rows="2",
                    id="review-comment",
                    disabled=~LoomState.can_operate,
                    aria_invalid=rx.cond(S.comment_error != "", "true", "false"),
                    aria_describedby="review-comment-help",
                    data_testid="review-comment",
                ),
                rx.hstack(
                    rx.text(COMMENT_LIMIT_TEXT, size="1", color=rx.color("gray", 11), id="review-comment-help"),
                    rx.spacer(),
                    rx.text(S.comment_count, size="1", color=rx.color("gray", 11), data_testid="comment-count"),
                    width="100%",
                    wrap="wrap",
                ),
                field_error(S.comment_error, "comment-error"),
                rx.hstack(
                    _action_button(
                        "Approve",
                        "check",
                        "approve:" + s.name,
                        S.review(s.name, True),
                        "approve",
                        blocked=S.comment_error != "",
                        size="2",
                        color_scheme="green",
                        high_contrast=True,
                    ),
                    _action_button(
                        "Reject",
                        "x",
                        "reject:" + s.name,
                        S.review(s.name, False),
                        "reject",
                        blocked=S.comment_error != "",
                        size="2",
                        color_scheme="red",
                        variant="soft",
                        high_contrast=True,
                    ),
                    spacing="2",
                ),
                width="100%",
                spacing="2",
            ),
        ),
    )


def _history() -> rx.Component:
    return rx.cond(
        S.events.length() > 0,
        rx.vstack(
            rx.vstack(rx.foreach(S.events, event_row), spacing="3", width="100%"),
            rx.cond(
                S.events_showing != "",
                rx.hstack(
                    rx.text(S.events_showing, size="1", color=rx.color("gray", 11)),
                    rx.button(
                        "Show more",
                        variant="soft",
                        color_scheme="gray",
                        size="1",
                        on_click=S.show_more_events,
                        data_testid="show-more-events",
                    ),
                    align="center",
                    justify="between",
                    width="100%",
                ),
            ),
            spacing="3",
            width="100%",
        ),
        rx.text(
            "Nothing has happened yet: start a Run to see who did what, and when.",
            size="2",
            color=rx.color("gray", 11),
        ),
    )


def _left_behind() -> rx.Component:
    """What a cancelled Run left open: its PRs stay open on the forge until someone closes or merges them."""
    return rx.cond(
        S.left_behind.length() > 0,
        rx.callout.root(
            rx.callout.icon(rx.icon("git-pull-request")),
            rx.vstack(
                rx.callout.text("The cancelled Run left these PRs open:", weight="medium"),
                rx.foreach(
                    S.left_behind,
                    lambda p: rx.hstack(
                        rx.code(p.step, size="1"),
                        rx.link(p.pr_url, href=p.pr_url, is_external=True, size="2", data_testid="left-behind-pr"),
                        spacing="2",
                        align="center",
                        wrap="wrap",
                    ),
                ),
                rx.callout.text("Close or merge them on the forge; a new Run starts from the first Step.", size="1"),
                spacing="1",
                min_width="0",
            ),
            color_scheme="violet",
            width="100%",
            margin_bottom="16px",
            data_testid="left-behind",
        ),
    )


def _inputs_dialog() -> rx.Component:
    return dialog(
        rx.cond(S.inputs_mode == "start", "Start " + S.candidate_id, "Edit inputs"),
        rx.cond(
            S.inputs_mode == "start",
            "The Migration needs these inputs. Values come from saved inputs or the Candidate's metadata.",
            "Saved inputs apply to Steps that have not run yet.",
        ),
        rx.vstack(
            rx.foreach(S.inputs, lambda i: input_field(i, lambda v: S.set_input(i.name, v))), spacing="3", width="100%"
        ),
        actions=(
            rx.cond(
                S.inputs_mode == "start",
                _action_button("Start", "play", "start", S.start, "start-confirm", blocked=S.inputs_have_errors),
                _action_button("Save", "save", "inputs", S.save_inputs, "inputs-confirm", blocked=S.inputs_have_errors),
            ),
        ),
        open=S.inputs_open,
        on_open_change=S.set_inputs_open,
    )


def _cancel_dialog() -> rx.Component:
    return confirm_dialog(
        "Cancel the Run of " + S.candidate_id + "?",
        "The Run stops and the Candidate goes back to Not started. PRs already opened stay open.",
        _action_button(
            "Cancel Run", "square", "cancel", S.cancel, "cancel-confirm", color_scheme="red", high_contrast=True
        ),
        keep="Keep running",
        open=S.cancel_open,
        on_open_change=S.set_cancel_open,
    )


def _header_actions() -> rx.Component:
    preview_href = "/migrations/" + S.migration_id + "/preview/" + S.candidate_id
    return rx.hstack(
        rx.cond(
            S.status == "not_started",
            rx.cond(
                S.inputs.length() > 0,
                _action_button("Start", "play", "start", S.open_inputs("start"), "start"),
                _action_button("Start", "play", "start", S.start, "start"),
            ),
        ),
        # A preview changes nothing: viewers may look too.
        link_button(rx.icon("eye", size=14), "Preview", href=preview_href, variant="soft", data_testid="preview"),
        rx.cond(
            S.inputs.length() > 0,
            operator_only(
                rx.button(
                    rx.icon("pencil", size=14),
                    "Edit inputs",
                    variant="soft",
                    on_click=S.open_inputs("edit"),
                    disabled=viewer_locked(S.busy != ""),
                    data_testid="edit-inputs",
                )
            ),
        ),
        rx.cond(
            S.status == "running",
            operator_only(
                rx.button(
                    rx.icon("square", size=14),
                    "Cancel",
                    color_scheme="red",
                    variant="soft",
                    high_contrast=True,
                    on_click=S.set_cancel_open(True),
                    disabled=viewer_locked(S.busy != ""),
                    data_testid="cancel",
                )
            ),
        ),
        spacing="2",
        wrap="wrap",
    )


def _drift() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.cond(
                S.drift_state == "drifted",
                rx.badge(
                    rx.icon("git-compare-arrows", size=12),
                    "Drifted",
                    color_scheme="orange",
                    variant="solid",
                    data_testid="drifted-badge",
                ),
                rx.cond(S.drift_state == "clean", rx.badge("No drift", color_scheme="green", variant="soft")),
            ),
            rx.text(
                rx.cond(
                    S.drift_state == "",
                    "A merged PR does not prove the change landed: run the dry run again to see what it still changes.",
                    S.drift_text,
                ),
                size="2",
                color=rx.color("gray", 11),
                data_testid="drift-summary",
            ),
            rx.spacer(),
            _action_button("Check drift", "git-compare-arrows", "drift", S.check_drift, "check-drift", variant="soft"),
            align="center",
            spacing="2",
            wrap="wrap",
            width="100%",
        ),
        rx.foreach(S.drift_files, diff_file),
        spacing="3",
        width="100%",
    )


def _run_link() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.text("Run id in Temporal (workflow id)", size="2", color=rx.color("gray", 11)),
            rx.code(S.workflow_id, size="2", variant="ghost", data_testid="workflow-id"),
            spacing="2",
            align="center",
            wrap="wrap",
        ),
        rx.cond(
            S.workflow_url != "",
            rx.link(
                rx.hstack(rx.text("Open in Temporal", size="2"), rx.icon("external-link", size=12), align="center"),
                href=S.workflow_url,
                is_external=True,
                data_testid="workflow-link",
            ),
        ),
        spacing="2",
        width="100%",
    )


def candidate_page() -> rx.Component:
    return page(
        breadcrumb(
            crumb("Migrations", "/"),
            crumb(S.migration_name, "/migrations/" + S.migration_id),
            rx.text(S.candidate_id, size="2", weight="medium"),
        ),
        rx.cond(
            S.not_found != "",
            empty_state(
                "circle-help",
                "This Candidate is not here",
                rx.text(S.not_found, size="2"),
                rx.link("Back to the board", href="/migrations/" + S.migration_id),
            ),
            rx.fragment(
                page_header(
                    rx.hstack(
                        rx.heading(S.candidate_id, size=rx.breakpoints(initial="6", sm="7"), as_="h1"),
                        rx.badge(S.kind, variant="outline", color_scheme="gray"),
                        status_badge(S.status_label, S.status_color, size="2", data_testid="candidate-status"),
                        align="center",
                        spacing="3",
                        wrap="wrap",
                    ),
                    None,
                    _header_actions(),
                    align="center",
                    margin_bottom="18px",
                ),
                _left_behind(),
                rx.cond(
                    S.loading,
                    skeleton_rows(4, "90px"),
                    rx.grid(
                        rx.vstack(
                            section(
                                "Steps",
                                rx.vstack(
                                    rx.foreach(S.steps, lambda s: timeline_step(s, _step_actions(s))),
                                    spacing="0",
                                    width="100%",
                                ),
                                data_testid="timeline",
                            ),
                            rx.cond(S.status == "completed", section("Drift", _drift(), data_testid="drift")),
                            section("History", _history(), data_testid="history"),
                            spacing="4",
                            width="100%",
                        ),
                        rx.vstack(
                            rx.cond(S.workflow_id != "", section("Run", _run_link(), data_testid="run")),
                            section("Metadata", key_values(S.meta)),
                            rx.cond(
                                S.saved_inputs.length() > 0, section("Inputs", key_values(S.saved_inputs, code=True))
                            ),
                            section(
                                "Files", file_list(S.files, "The Migrator discovered no files for this Candidate.")
                            ),
                            spacing="4",
                            width="100%",
                        ),
                        # Metadata and files under the timeline on a phone or a tablet held upright.
                        columns=rx.breakpoints(initial="minmax(0, 1fr)", md="minmax(0, 2fr) minmax(0, 1fr)"),
                        spacing="4",
                        width="100%",
                        align_items="start",
                    ),
                ),
                _inputs_dialog(),
                _cancel_dialog(),
            ),
        ),
    )
