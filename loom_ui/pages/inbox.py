"""Needs me (`/inbox`): every Step across all Migrations that waits on a person, oldest first."""

from __future__ import annotations

from datetime import UTC, datetime

import reflex as rx

from loom_backend.domain import CandidateStatus, EventType, Principal
from loom_ui.components.access import operator_only, viewer_locked
from loom_ui.components.layout import empty_state, link_button, page, page_header, skeleton_rows
from loom_ui.components.status import stuck_badge
from loom_ui.state import LiveMixin, LoomState, error_text, service
from loom_ui.views.candidate import left_open_prs
from loom_ui.views.inbox import LeftBehindRow, RolloutRow, WaitingRow, left_behind_rows, rollout_row, waiting_row

# How far back Needs me looks for cancelled Runs, per Migration, and how much of one Run's history it reads.
CANCELS_LOOKED_AT = 50
RUN_HISTORY = 1_000


async def _left_behind(who: Principal) -> list[LeftBehindRow]:
    """The PRs cancelled Runs left open, read from the event log: the Run's Steps reset when it was cancelled."""
    rows: list[LeftBehindRow] = []
    for m in await service().list_migrations(who):
        cancels = await service().list_events(who, m.id, event_type=EventType.RUN_CANCELLED, limit=CANCELS_LOOKED_AT)
        for cid in dict.fromkeys(e.candidate_id for e in cancels.events):
            if (await service().get_candidate(who, m.id, cid)).status != CandidateStatus.NOT_STARTED:
                continue
            history = await service().list_events(who, m.id, candidate_id=cid, limit=RUN_HISTORY)
            rows += left_behind_rows(m.id, m.name, cid, left_open_prs(history.events))
    return rows


class InboxState(LiveMixin, LoomState):
    rows: list[WaitingRow] = []
    left_behind: list[LeftBehindRow] = []
    rollouts: list[RolloutRow] = []
    busy: str = ""
    threshold: str = ""

    async def _reload(self) -> None:
        now = datetime.now(UTC)
        waiting = await service().needs_me(self._viewer())
        self.rows = [waiting_row(w, now) for w in waiting]
        self.rollouts = [rollout_row(w) for w in await service().rollouts_waiting(self._viewer())]
        self.left_behind = await _left_behind(self._viewer())
        self.needs_me_count = len(self.rows) + len(self.rollouts)
        self.threshold = f"{service().open_pr_attention_hours:g} h"

    @rx.event
    async def load(self):
        if not await self._signed_in():
            return
        try:
            await self._reload()
        except Exception as exc:
            yield rx.toast.error(error_text(exc))
        self.loading = False

    @rx.event(background=True)
    async def act(self, key: str, action: str):
        async with self:
            if self.busy:
                return None
            row = next((r for r in self.rows if r.key == key), None)
            if row is None:
                return None
            self.busy = f"{action}:{key}"
        s = service()
        try:
            async with self:
                who = await self._actor()
            if action == "approve":
                await s.review_step(who, row.migration_id, row.candidate_id, row.step, True, None)
            elif action == "retry":
                await s.retry_step(who, row.migration_id, row.candidate_id, row.step)
            elif action == "merged":
                await s.mark_merged(who, row.migration_id, row.candidate_id, row.step)
        except Exception as exc:
            async with self:
                self.busy = ""
            return rx.toast.error(error_text(exc), duration=8000)
        async with self:
            self.busy = ""
            await self._reload()
        done = {"approve": "approved", "retry": "retried", "merged": "marked as merged"}[action]
        return rx.toast.success(f"{row.candidate_id} · {row.step} {done}")

    @rx.event
    async def rollout_act(self, migration_id: str, action: str):
        """Promote or resume a rollout from Needs me."""
        if self.busy:
            return None
        self.busy = f"rollout-{action}:{migration_id}"
        try:
            await service().rollout_action(await self._actor(), migration_id, action)
        except Exception as exc:
            return rx.toast.error(error_text(exc), duration=8000)
        finally:
            self.busy = ""
        await self._reload()
        return rx.toast.success("Promoted: the next wave starts" if action == "promote" else "Rollout resumed")


def _action(row: WaitingRow, action: str, label: str, icon: str, **props) -> rx.Component:
    return operator_only(
        rx.button(
            rx.icon(icon, size=14),
            label,
            # Ten rows, ten Approve buttons: each one's name says which Candidate and Step it acts on.
            aria_label=label + " " + row.candidate_id + " · " + row.step + " (" + row.migration_name + ")",
            size="2",
            on_click=InboxState.act(row.key, action),
            loading=InboxState.busy == action + ":" + row.key,
            disabled=viewer_locked(InboxState.busy != ""),
            data_testid="inbox-" + action,
            **props,
        )
    )


def _row(row: WaitingRow) -> rx.Component:
    return rx.card(
        rx.hstack(
            rx.center(
                rx.icon(row.icon, size=18),
                width="36px",
                height="36px",
                border_radius="999px",
                background=rx.color(row.color, 4),
                color=rx.color(row.color, 11),
                flex_shrink="0",
            ),
            rx.vstack(
                rx.hstack(
                    rx.link(row.candidate_id, href=row.href, weight="bold", size="3", min_width="0"),
                    rx.text("·", color=rx.color("gray", 11), aria_hidden="true"),
                    rx.text(row.step, size="2", weight="medium"),
                    rx.badge(row.reason_label, color_scheme=row.color, variant="soft", data_testid="inbox-reason"),
                    stuck_badge(row.stuck),
                    align="center",
                    spacing="2",
                    wrap="wrap",
                ),
                rx.hstack(
                    rx.link(
                        row.migration_name, href="/migrations/" + row.migration_id, size="1", color=rx.color("gray", 11)
                    ),
                    rx.text("waiting ", row.waited, size="1", color=rx.color("gray", 11)),
                    rx.cond(row.pr_url != "", rx.link("Open PR", href=row.pr_url, is_external=True, size="1")),
                    spacing="3",
                    wrap="wrap",
                ),
                rx.cond(row.error != "", rx.text(row.error, size="1", color=rx.color("red", 11))),
                spacing="1",
                min_width="0",
                flex="1 1 240px",
            ),
            # On a phone the actions go under the text instead of over it.
            rx.hstack(
                rx.cond(
                    row.can_approve,
                    rx.hstack(
                        _action(row, "approve", "Approve", "check", color_scheme="green", high_contrast=True),
                        link_button(
                            "Review",
                            href=row.href,
                            variant="soft",
                            aria_label="Review " + row.candidate_id + " · " + row.step,
                        ),
                        spacing="2",
                    ),
                ),
                rx.cond(row.can_retry, _action(row, "retry", "Retry", "rotate-ccw")),
                rx.cond(row.can_mark_merged, _action(row, "merged", "Mark as merged", "git-merge", variant="soft")),
                spacing="2",
                margin_left="auto",
            ),
            align="center",
            spacing="3",
            width="100%",
            wrap="wrap",
        ),
        width="100%",
        data_testid="inbox-row",
        data_candidate=row.candidate_id,
    )


def inbox_page() -> rx.Component:
    return page(
        page_header(
            "Needs me",
            rx.fragment(
                "Reviews awaiting approval, failed Steps and PRs open longer than ",
                InboxState.threshold,
                ", across every Migration. Oldest first.",
            ),
        ),
        rx.cond(
            InboxState.loading,
            skeleton_rows(4, "64px"),
            rx.cond(
                InboxState.rows.length() > 0,
                rx.vstack(rx.foreach(InboxState.rows, _row), spacing="2", width="100%", data_testid="inbox-rows"),
                rx.cond(InboxState.rollouts.length() > 0, rx.fragment(), _nothing_waits()),
            ),
        ),
        _rollouts_section(),
        _left_behind_section(),
    )


def _nothing_waits() -> rx.Component:
    return empty_state(
        "circle-check",
        "Nothing waits on you",
        rx.text(
            "When a Step needs a review, fails, or its PR stays open too long, it shows here.",
            size="2",
            color=rx.color("gray", 11),
        ),
    )


def _rollout_action(r: RolloutRow, action: str, label: str, icon: str) -> rx.Component:
    return operator_only(
        rx.button(
            rx.icon(icon, size=14),
            label,
            aria_label=label + " the rollout of " + r.migration_name,
            size="2",
            on_click=InboxState.rollout_act(r.migration_id, action),
            loading=InboxState.busy == "rollout-" + action + ":" + r.migration_id,
            disabled=viewer_locked(InboxState.busy != ""),
            data_testid="inbox-rollout-" + action,
        )
    )


def _rollout_row(r: RolloutRow) -> rx.Component:
    return rx.card(
        rx.hstack(
            rx.icon("list-checks", size=18, color=rx.color("amber", 11), aria_hidden="true"),
            rx.vstack(
                rx.hstack(
                    rx.link(r.migration_name, href=r.href, weight="bold", size="3"),
                    rx.badge(r.label, color_scheme="amber", variant="soft"),
                    spacing="2",
                    align="center",
                    wrap="wrap",
                ),
                rx.text(r.reason, size="2", data_testid="inbox-rollout-reason"),
                rx.text(r.counts, size="1", color=rx.color("gray", 11)),
                spacing="1",
                flex="1 1 240px",
                min_width="0",
            ),
            rx.hstack(
                rx.cond(r.can_promote, _rollout_action(r, "promote", "Promote", "chevrons-right")),
                rx.cond(r.can_resume, _rollout_action(r, "resume", "Resume", "play")),
                spacing="2",
                margin_left="auto",
            ),
            align="center",
            spacing="3",
            width="100%",
            wrap="wrap",
        ),
        width="100%",
        data_testid="inbox-rollout",
        data_migration=r.migration_id,
    )


def _rollouts_section() -> rx.Component:
    return rx.cond(
        InboxState.rollouts.length() > 0,
        rx.vstack(
            rx.heading("Rollouts waiting", size="4", as_="h2"),
            rx.foreach(InboxState.rollouts, _rollout_row),
            spacing="2",
            width="100%",
            margin_top="24px",
            data_testid="inbox-rollouts",
        ),
    )


def _left_behind_row(r: LeftBehindRow) -> rx.Component:
    return rx.card(
        rx.hstack(
            rx.icon("git-pull-request", size=16, color=rx.color("violet", 11), aria_hidden="true"),
            rx.link(r.candidate_id, href=r.href, weight="bold", size="2"),
            rx.code(r.step, size="1"),
            rx.link(r.migration_name, href="/migrations/" + r.migration_id, size="1", color=rx.color("gray", 11)),
            rx.link("Open PR", href=r.pr_url, is_external=True, size="2", data_testid="left-behind-pr"),
            align="center",
            spacing="3",
            wrap="wrap",
        ),
        width="100%",
        data_testid="left-behind-row",
        data_candidate=r.candidate_id,
    )


def _left_behind_section() -> rx.Component:
    return rx.cond(
        InboxState.left_behind.length() > 0,
        rx.vstack(
            rx.heading("Left open by cancelled Runs", size="4", as_="h2"),
            rx.text(
                "Cancelling a Run leaves its PRs open: close or merge each on the forge.",
                size="2",
                color=rx.color("gray", 11),
            ),
            rx.foreach(InboxState.left_behind, _left_behind_row),
            spacing="2",
            width="100%",
            margin_top="24px",
            data_testid="left-behind",
        ),
    )
