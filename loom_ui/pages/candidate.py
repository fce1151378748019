"""Candidate (`/migrations/[migration_id]/candidates/[candidate_id]`): the live Step timeline and its actions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import reflex as rx

from loom_backend import errors
from loom_backend.domain import (
    CandidateStatus,
    Principal,
    StepDefinition,
    StepEvent,
    StepResult,
    StepStatus,
    steps_for,
)
from loom_ui import format as fmt
from loom_ui.components.access import operator_only, viewer_locked
from loom_ui.components.layout import breadcrumb, crumb, empty_state, page, skeleton_rows
from loom_ui.components.status import status_badge
from loom_ui.pages.board import InputField
from loom_ui.state import LiveMixin, LoomState, MetaPair, error_text, service

EVENTS_PAGE = 50


@dataclass
class StepView:
    number: int = 0
    name: str = ""
    description: str = ""
    type: str = ""
    status: str = ""
    status_label: str = ""
    status_color: str = "gray"
    started: str = ""
    duration: str = ""
    pr_url: str = ""
    instructions: str = ""
    error: str = ""
    meta: list[MetaPair] = field(default_factory=list)
    can_retry: bool = False
    can_review: bool = False
    can_mark_merged: bool = False


@dataclass
class EventView:
    when: str = ""
    clock: str = ""
    label: str = ""
    step: str = ""
    status: str = ""
    status_color: str = "gray"
    actor: str = ""
    detail: str = ""
    comment: str = ""
    type: str = ""


@dataclass
class FileView:
    path: str = ""
    url: str = ""


@dataclass
class FileGroupView:
    name: str = ""
    repo: str = ""
    files: list[FileView] = field(default_factory=list)


def step_views(plan: list[StepDefinition], results: list[StepResult], running: bool, now: datetime) -> list[StepView]:
    """Every Step in order, the plan's and any the Run recorded beyond it, with what can be done to each."""
    by_name = {r.step_name: r for r in results}
    names = [s.name for s in plan] + [r.step_name for r in results if r.step_name not in {s.name for s in plan}]
    definitions = {s.name: s for s in plan}
    views = []
    for number, name in enumerate(names, start=1):
        d = definitions.get(name)
        r = by_name.get(name)
        status = r.status.value if r else ""
        meta = {k: v for k, v in r.metadata.items() if k != "prUrl"} if r else {}
        error = meta.pop("error", "") if r and r.status == StepStatus.FAILED else ""
        end = r.completed_at if r and r.completed_at else (now if r and r.status.waiting else None)
        views.append(
            StepView(
                number=number,
                name=name,
                description=(d.description or "") if d else "",
                type=(d.type or "") if d else "",
                status=status,
                status_label=fmt.status_label(status) if r else "Not reached",
                status_color=fmt.status_color(status),
                started=fmt.clock_time(r.started_at) if r else "",
                duration=fmt.duration(r.started_at if r else None, end),
                pr_url=(r.pr_url or "") if r else "",
                instructions=(d.instructions or "") if d and r and r.status == StepStatus.AWAITING_REVIEW else "",
                error=error,
                meta=[MetaPair(k, v) for k, v in sorted(meta.items())],
                can_retry=running and r is not None and r.status == StepStatus.FAILED,
                can_review=running and r is not None and r.status == StepStatus.AWAITING_REVIEW,
                can_mark_merged=running and r is not None and r.status == StepStatus.OPEN,
            )
        )
    return views


def event_view(e: StepEvent, now: datetime) -> EventView:
    return EventView(
        when=fmt.relative_time(e.created_at, now),
        clock=fmt.clock_time(e.created_at),
        label=fmt.event_label(e.event_type.value, e.status),
        step=e.step_name or "",
        status=fmt.status_label(e.status) if e.status else "",
        status_color=fmt.status_color(e.status),
        actor=e.actor or "",
        detail=fmt.event_detail(e.metadata),
        comment=fmt.event_comment(e.metadata),
        type=e.event_type.value,
    )


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
    not_found: str = ""

    busy: str = ""
    inputs_open: bool = False
    inputs_mode: str = "start"
    cancel_open: bool = False
    comment: str = ""
    _loaded_for: str = ""
    _events_limit: int = EVENTS_PAGE

    def _live_scope(self) -> str | None:
        return self.migration_id or None

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
        running = candidate.status == CandidateStatus.RUNNING
        self.migration_name = migration.name
        self.kind = candidate.kind
        self.status = candidate.status.value
        self.status_label = fmt.status_label(candidate.status.value)
        self.status_color = fmt.status_color(candidate.status.value)
        self.meta = [MetaPair(k, v) for k, v in candidate.metadata.items()]
        self.saved_inputs = [MetaPair(k, v) for k, v in sorted(saved.items())]
        self.steps = step_views(steps_for(candidate, migration.steps), results, running, now)
        self.events = [event_view(e, now) for e in events.events]
        self.events_total = events.total
        self.events_showing = fmt.showing(len(events.events), events.total, "event")
        self.files = [
            FileGroupView(g.name, g.repo, [FileView(f.path, f.url) for f in g.files]) for g in candidate.files
        ]
        if not self.inputs_open:
            self.inputs = [
                InputField(
                    i.name, i.label, i.description or "", saved.get(i.name) or candidate.metadata.get(i.name, "")
                )
                for i in migration.required_inputs
            ]

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
        self.inputs = [
            InputField(i.name, i.label, i.description, value if i.name == name else i.value) for i in self.inputs
        ]

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

    def _input_values(self) -> dict[str, str]:
        return {i.name: i.value.strip() for i in self.inputs if i.value.strip()}

    @rx.event(background=True)
    async def start(self):
        async with self:
            inputs = self._input_values()
        return await self._act("start", lambda mid, cid, who: service().start_run(who, mid, cid, inputs), "Run started")

    @rx.event(background=True)
    async def save_inputs(self):
        async with self:
            inputs = self._input_values()
        return await self._act(
            "inputs", lambda mid, cid, who: service().update_inputs(who, mid, cid, inputs), "Inputs saved"
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


def _action_button(label, icon: str, key, on_click, testid: str, **props) -> rx.Component:
    return operator_only(
        rx.button(
            rx.icon(icon, size=14),
            label,
            on_click=on_click,
            loading=S.busy == key,
            disabled=viewer_locked(S.busy != ""),
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
                rx.text_area(
                    value=S.comment,
                    on_change=S.set_comment,
                    placeholder="Comment (optional)",
                    width="100%",
                    rows="2",
                    disabled=~LoomState.can_operate,
                    data_testid="review-comment",
                ),
                rx.hstack(
                    _action_button(
                        "Approve",
                        "check",
                        "approve:" + s.name,
                        S.review(s.name, True),
                        "approve",
                        size="2",
                        color_scheme="green",
                    ),
                    _action_button(
                        "Reject",
                        "x",
                        "reject:" + s.name,
                        S.review(s.name, False),
                        "reject",
                        size="2",
                        color_scheme="red",
                        variant="soft",
                    ),
                    spacing="2",
                ),
                width="100%",
                spacing="2",
            ),
        ),
    )


def _step(s: StepView) -> rx.Component:
    return rx.hstack(
        rx.vstack(
            rx.center(
                rx.text(s.number, size="1", weight="bold"),
                width="26px",
                height="26px",
                border_radius="999px",
                background=rx.color(s.status_color, 4),
                color=rx.color(s.status_color, 11),
                border=f"1px solid {rx.color('gray', 6)}",
                flex_shrink="0",
            ),
            rx.box(width="2px", flex_grow="1", background=rx.color("gray", 5)),
            align="center",
            spacing="1",
            align_self="stretch",
        ),
        rx.vstack(
            rx.hstack(
                rx.text(s.name, weight="bold", size="3"),
                rx.cond(s.type != "", rx.code(s.type, size="1", variant="ghost")),
                status_badge(s.status_label, s.status_color, data_testid="timeline-status"),
                rx.spacer(),
                rx.cond(s.started != "", rx.text(s.started, size="1", color=rx.color("gray", 10))),
                rx.cond(
                    s.duration != "",
                    rx.badge(rx.icon("timer", size=11), s.duration, variant="outline", color_scheme="gray"),
                ),
                width="100%",
                align="center",
                spacing="2",
                wrap="wrap",
            ),
            rx.cond(s.description != "", rx.text(s.description, size="2", color=rx.color("gray", 11))),
            rx.cond(
                s.pr_url != "",
                rx.link(
                    rx.hstack(
                        rx.icon("git-pull-request", size=14), rx.text(s.pr_url, size="2"), spacing="1", align="center"
                    ),
                    href=s.pr_url,
                    is_external=True,
                    data_testid="timeline-pr-link",
                ),
            ),
            rx.cond(
                s.error != "",
                rx.callout(
                    s.error, icon="circle-x", color_scheme="red", size="1", width="100%", data_testid="step-error"
                ),
            ),
            rx.cond(
                s.instructions != "",
                rx.callout(s.instructions, icon="clipboard-check", color_scheme="amber", size="1", width="100%"),
            ),
            rx.cond(
                s.meta.length() > 0,
                rx.hstack(
                    rx.foreach(
                        s.meta, lambda m: rx.badge(m.key, ": ", m.value, variant="surface", color_scheme="gray")
                    ),
                    wrap="wrap",
                    spacing="1",
                ),
            ),
            _step_actions(s),
            spacing="2",
            width="100%",
            padding_bottom="18px",
        ),
        spacing="3",
        width="100%",
        data_testid="timeline-step",
        data_step=s.name,
        data_status=s.status,
    )


def _event(e: EventView) -> rx.Component:
    return rx.hstack(
        rx.box(
            width="8px",
            height="8px",
            border_radius="999px",
            background=rx.color(e.status_color, 9),
            margin_top="7px",
            flex_shrink="0",
        ),
        rx.vstack(
            rx.hstack(
                rx.text(e.label, size="2", weight="medium", data_testid="event-label"),
                rx.cond(e.step != "", rx.code(e.step, size="1", variant="ghost")),
                rx.cond(e.status != "", status_badge(e.status, e.status_color, size="1")),
                rx.spacer(),
                rx.text(e.when, size="1", color=rx.color("gray", 10), white_space="nowrap"),
                spacing="2",
                wrap="wrap",
                align="center",
                width="100%",
            ),
            rx.hstack(
                rx.cond(
                    e.actor != "",
                    rx.text(
                        "by ", rx.text.strong(e.actor), size="1", color=rx.color("gray", 11), data_testid="event-actor"
                    ),
                ),
                rx.text(e.clock, size="1", color=rx.color("gray", 10)),
                spacing="2",
            ),
            rx.cond(
                e.comment != "",
                rx.blockquote(e.comment, size="2", color=rx.color("gray", 12), data_testid="event-comment"),
            ),
            rx.cond(e.detail != "", rx.text(e.detail, size="1", color=rx.color("gray", 11))),
            spacing="1",
            width="100%",
        ),
        spacing="2",
        align="start",
        width="100%",
        data_testid="event",
        data_type=e.type,
    )


def _history() -> rx.Component:
    return rx.cond(
        S.events.length() > 0,
        rx.vstack(
            rx.vstack(rx.foreach(S.events, _event), spacing="3", width="100%"),
            rx.cond(
                S.events_showing != "",
                rx.hstack(
                    rx.text(S.events_showing, size="1", color=rx.color("gray", 10)),
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
            color=rx.color("gray", 10),
        ),
    )


def _section(title: str, *children, **props) -> rx.Component:
    return rx.card(rx.vstack(rx.heading(title, size="3"), *children, spacing="3", width="100%"), width="100%", **props)


def _inputs_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(rx.cond(S.inputs_mode == "start", "Start " + S.candidate_id, "Edit inputs")),
            rx.dialog.description(
                rx.cond(
                    S.inputs_mode == "start",
                    "The Migration needs these inputs. Values come from saved inputs or the Candidate's metadata.",
                    "Saved inputs apply to Steps that have not run yet.",
                ),
                size="2",
                margin_bottom="12px",
            ),
            rx.vstack(
                rx.foreach(
                    S.inputs,
                    lambda i: rx.vstack(
                        rx.el.label(rx.text(i.label, size="2", weight="medium"), html_for="input-" + i.name),
                        rx.input(
                            value=i.value,
                            on_change=lambda v: S.set_input(i.name, v),
                            id="input-" + i.name,
                            name=i.name,
                            width="100%",
                            data_testid="input-" + i.name,
                        ),
                        rx.cond(i.description != "", rx.text(i.description, size="1", color=rx.color("gray", 10))),
                        spacing="1",
                        width="100%",
                    ),
                ),
                spacing="3",
            ),
            rx.hstack(
                rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray")),
                rx.cond(
                    S.inputs_mode == "start",
                    _action_button("Start", "play", "start", S.start, "start-confirm"),
                    _action_button("Save", "save", "inputs", S.save_inputs, "inputs-confirm"),
                ),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
        ),
        open=S.inputs_open,
        on_open_change=S.set_inputs_open,
    )


def _cancel_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Cancel the Run of " + S.candidate_id + "?"),
            rx.alert_dialog.description(
                "The Run stops and the Candidate goes back to Not started. PRs already opened stay open.", size="2"
            ),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Keep running", variant="soft", color_scheme="gray")),
                _action_button("Cancel Run", "square", "cancel", S.cancel, "cancel-confirm", color_scheme="red"),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
        ),
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
        rx.cond(
            LoomState.can_operate,
            rx.link(
                rx.button(rx.icon("eye", size=14), "Preview", variant="soft"), href=preview_href, data_testid="preview"
            ),
            operator_only(
                rx.button(rx.icon("eye", size=14), "Preview", variant="soft", disabled=True, data_testid="preview")
            ),
        ),
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
                    on_click=S.set_cancel_open(True),
                    disabled=viewer_locked(S.busy != ""),
                    data_testid="cancel",
                )
            ),
        ),
        spacing="2",
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
                rx.hstack(
                    rx.vstack(
                        rx.hstack(
                            rx.heading(S.candidate_id, size="7"),
                            rx.badge(S.kind, variant="outline", color_scheme="gray"),
                            status_badge(S.status_label, S.status_color, size="2", data_testid="candidate-status"),
                            align="center",
                            spacing="3",
                        ),
                        spacing="1",
                    ),
                    rx.spacer(),
                    _header_actions(),
                    align="center",
                    width="100%",
                    margin_bottom="18px",
                ),
                rx.cond(
                    S.loading,
                    skeleton_rows(4, "90px"),
                    rx.grid(
                        rx.vstack(
                            _section(
                                "Steps",
                                rx.vstack(rx.foreach(S.steps, _step), spacing="0", width="100%"),
                                data_testid="timeline",
                            ),
                            _section("History", _history(), data_testid="history"),
                            spacing="4",
                            width="100%",
                        ),
                        rx.vstack(
                            _section(
                                "Metadata",
                                rx.data_list.root(
                                    rx.foreach(
                                        S.meta,
                                        lambda m: rx.data_list.item(
                                            rx.data_list.label(m.key), rx.data_list.value(m.value)
                                        ),
                                    ),
                                    size="1",
                                ),
                            ),
                            rx.cond(
                                S.saved_inputs.length() > 0,
                                _section(
                                    "Inputs",
                                    rx.data_list.root(
                                        rx.foreach(
                                            S.saved_inputs,
                                            lambda m: rx.data_list.item(
                                                rx.data_list.label(m.key), rx.data_list.value(rx.code(m.value))
                                            ),
                                        ),
                                        size="1",
                                    ),
                                ),
                            ),
                            _section(
                                "Files",
                                rx.cond(
                                    S.files.length() > 0,
                                    rx.vstack(
                                        rx.foreach(
                                            S.files,
                                            lambda g: rx.vstack(
                                                rx.hstack(
                                                    rx.icon("folder-git-2", size=14),
                                                    rx.text(g.name, weight="medium", size="2"),
                                                    rx.cond(g.repo != "", rx.code(g.repo, size="1")),
                                                    align="center",
                                                    spacing="2",
                                                ),
                                                rx.foreach(
                                                    g.files,
                                                    lambda f: rx.cond(
                                                        f.url != "",
                                                        rx.link(
                                                            f.path,
                                                            href=f.url,
                                                            is_external=True,
                                                            size="1",
                                                            padding_left="20px",
                                                        ),
                                                        rx.text(f.path, size="1", padding_left="20px"),
                                                    ),
                                                ),
                                                spacing="1",
                                            ),
                                        ),
                                        spacing="3",
                                    ),
                                    rx.text(
                                        "The Migrator discovered no files for this Candidate.",
                                        size="2",
                                        color=rx.color("gray", 10),
                                    ),
                                ),
                            ),
                            spacing="4",
                            width="100%",
                        ),
                        columns="minmax(0, 2fr) minmax(0, 1fr)",
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
