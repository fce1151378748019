"""Preview (`/migrations/[migration_id]/preview/[candidate_id]`): what a Run would change, Step by Step."""

from __future__ import annotations

import reflex as rx

from loom_backend.domain import CandidateStatus, DryRunCandidateRequest
from loom_ui.components.access import operator_only, viewer_locked
from loom_ui.components.layout import breadcrumb, crumb, empty_state, page, page_header, skeleton_rows
from loom_ui.state import LoomState, error_text, service
from loom_ui.views.preview import FilePreview, LineView, StepPreview, step_previews


class PreviewState(LoomState):
    migration_name: str = ""
    candidate_status: str = ""
    steps: list[StepPreview] = []
    error: str = ""
    loading: bool = True
    busy: bool = False

    @rx.event
    async def load(self):
        if not await self._signed_in():
            return
        self.loading, self.error, self.steps = True, "", []
        yield
        mid, cid = self.migration_id, self.candidate_id
        try:
            who = await self._actor()  # a dry run asks the Migrator to do the work: operators only, as in the API
            self.migration_name = (await service().get_migration(who, mid, with_candidates=False)).name
            self.candidate_status = (await service().get_candidate(who, mid, cid)).status.value
            await self._count_needs_me()
            self.steps = step_previews(await service().dry_run(who, mid, DryRunCandidateRequest(candidate_id=cid)))
        except Exception as exc:
            self.error = error_text(exc)
        self.loading = False

    @rx.event(background=True)
    async def start(self):
        async with self:
            if self.busy:
                return None
            self.busy = True
            mid, cid = self.migration_id, self.candidate_id
        try:
            async with self:
                who = await self._actor()
            await service().start_run(who, mid, cid, {})
        except Exception as exc:
            async with self:
                self.busy = False
            return rx.toast.error(error_text(exc), duration=8000)
        async with self:
            self.busy = False
            self.candidate_status = CandidateStatus.RUNNING.value
        return [rx.toast.success("Run started"), rx.redirect(f"/migrations/{mid}/candidates/{cid}")]


P = PreviewState
LINE_COLORS = {"add": "green", "del": "red", "hunk": "blue"}


def _line(line: LineView) -> rx.Component:
    return rx.el.div(
        line.text,
        style={
            "white_space": "pre",
            "padding": "0 12px",
            "min_height": "18px",
            "background": rx.match(
                line.kind,
                ("add", rx.color("green", 3)),
                ("del", rx.color("red", 3)),
                ("hunk", rx.color("blue", 3)),
                "transparent",
            ),
            "color": rx.match(
                line.kind,
                ("add", rx.color("green", 11)),
                ("del", rx.color("red", 11)),
                ("hunk", rx.color("blue", 11)),
                ("meta", rx.color("gray", 10)),
                rx.color("gray", 12),
            ),
        },
    )


def _file(f: FilePreview) -> rx.Component:
    return rx.box(
        rx.hstack(
            rx.icon("file-code", size=14),
            rx.text(f.path, weight="medium", size="2", font_family="var(--code-font-family)"),
            rx.cond(f.repo != "", rx.code(f.repo, size="1", variant="ghost")),
            rx.badge(f.label, color_scheme=f.color, variant="soft"),
            rx.spacer(),
            rx.text("+", f.added, size="1", color=rx.color("green", 11)),
            rx.text("-", f.removed, size="1", color=rx.color("red", 11)),
            align="center",
            spacing="2",
            padding="8px 12px",
            background=rx.color("gray", 3),
            width="100%",
        ),
        rx.box(
            rx.foreach(f.lines, _line),
            font_family="var(--code-font-family)",
            font_size="12px",
            line_height="18px",
            overflow_x="auto",
            padding_y="6px",
        ),
        border=f"1px solid {rx.color('gray', 5)}",
        border_radius="var(--radius-3)",
        overflow="hidden",
        width="100%",
        data_testid="diff-file",
    )


def _step(s: StepPreview) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.heading(s.name, size="4"),
                rx.cond(s.skipped, rx.badge("Skipped", color_scheme="gray")),
                rx.cond(s.error != "", rx.badge("Error", color_scheme="red")),
                rx.cond(~s.skipped & (s.error == ""), rx.badge(s.files.length(), " files", variant="soft")),
                align="center",
                spacing="2",
            ),
            rx.cond(s.error != "", rx.callout(s.error, icon="circle-x", color_scheme="red", width="100%")),
            rx.cond(
                s.skipped,
                rx.text(
                    "This Step would not change anything for this Candidate.", size="2", color=rx.color("gray", 10)
                ),
            ),
            rx.foreach(s.files, _file),
            spacing="3",
            width="100%",
        ),
        width="100%",
        data_testid="preview-step",
    )


def preview_page() -> rx.Component:
    return page(
        breadcrumb(
            crumb("Migrations", "/"),
            crumb(P.migration_name, "/migrations/" + P.migration_id),
            crumb(P.candidate_id, "/migrations/" + P.migration_id + "/candidates/" + P.candidate_id),
            rx.text("Preview", size="2", weight="medium"),
        ),
        page_header(
            rx.heading("Preview of ", P.candidate_id, size="7"),
            "What a Run would change, as the Migrator's dry run reports it. Nothing is written.",
            rx.cond(
                P.candidate_status == "not_started",
                operator_only(
                    rx.button(
                        rx.icon("play", size=14),
                        "Start",
                        on_click=P.start,
                        loading=P.busy,
                        disabled=viewer_locked(P.busy),
                        data_testid="preview-start",
                    )
                ),
            ),
            margin_bottom="18px",
        ),
        rx.cond(
            P.loading,
            skeleton_rows(3, "160px"),
            rx.cond(
                P.error != "",
                empty_state("cloud-off", "No preview", rx.text(P.error, size="2", data_testid="preview-error")),
                rx.vstack(rx.foreach(P.steps, _step), spacing="4", width="100%"),
            ),
        ),
    )
