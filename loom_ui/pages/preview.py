"""Preview (`/migrations/[migration_id]/preview/[candidate_id]`): what a Run would change, Step by Step."""

from __future__ import annotations

import reflex as rx

from loom_backend import errors
from loom_backend.domain import CandidateStatus, DryRunCandidateRequest
from loom_ui.components.access import operator_only, viewer_locked
from loom_ui.components.forms import input_field
from loom_ui.components.layout import breadcrumb, crumb, empty_state, page, page_header, skeleton_rows
from loom_ui.state import LoomState, error_text, service
from loom_ui.views.common import InputField, entered, has_errors, input_fields, with_error, with_value
from loom_ui.views.preview import FilePreview, LineView, StepPreview, step_previews

# The preview re-runs this long after the last keystroke in an input.
RERUN_AFTER_MS = 600


class PreviewState(LoomState):
    migration_name: str = ""
    candidate_status: str = ""
    inputs: list[InputField] = []
    steps: list[StepPreview] = []
    error: str = ""
    loading: bool = True
    running: bool = False
    busy: bool = False

    @rx.var
    def inputs_have_errors(self) -> bool:
        return has_errors(self.inputs)

    @rx.event
    async def load(self):
        if not await self._signed_in():
            return
        self.loading, self.error, self.steps, self.migration_name = True, "", [], ""
        yield
        mid, cid = self.migration_id, self.candidate_id
        try:
            # A dry run changes nothing, so a viewer may preview as well (the service says so too).
            who = self._viewer()
            migration = await service().get_migration(who, mid, with_candidates=False)
            candidate = await service().get_candidate(who, mid, cid)
            saved = await service().get_inputs(who, mid, cid)
            self.migration_name = migration.name
            self.candidate_status = candidate.status.value
            self.inputs = input_fields(migration.required_inputs, saved, candidate.metadata)
            await self._count_needs_me()
        except Exception as exc:
            self.error = error_text(exc)
            self.loading = False
            return
        await self._preview()
        self.loading = False

    async def _preview(self) -> None:
        """Ask the Migrator's dry run with the inputs as typed; a field the service refuses shows why."""
        if has_errors(self.inputs):
            return
        request = DryRunCandidateRequest(candidate_id=self.candidate_id, inputs=entered(self.inputs))
        try:
            result = await service().dry_run(self._viewer(), self.migration_id, request)
        except errors.InvalidInput as exc:
            shown = with_error(self.inputs, exc.field, str(exc))
            if shown is not None:
                self.inputs = shown
            else:
                self.error = error_text(exc)
            return
        except Exception as exc:
            self.error = error_text(exc)
            return
        self.error = ""
        self.steps = step_previews(result)

    @rx.event
    async def set_input(self, name: str, value: str):
        """Called debounced while an operator types: the preview follows the inputs without a button."""
        self.inputs = with_value(self.inputs, name, value)
        self.running = True
        yield
        await self._preview()
        self.running = False

    @rx.event(background=True)
    async def start(self):
        async with self:
            if self.busy or has_errors(self.inputs):
                return None
            self.busy = True
            mid, cid = self.migration_id, self.candidate_id
            inputs = entered(self.inputs)
        try:
            async with self:
                who = await self._actor()
            await service().start_run(who, mid, cid, inputs)
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
                ("meta", rx.color("gray", 11)),
                rx.color("gray", 12),
            ),
        },
    )


def diff_file(f: FilePreview) -> rx.Component:
    """One file of a dry run: its path, what happens to it, and its diff (the candidate page shows drift so)."""
    return rx.box(
        rx.hstack(
            rx.icon("file-code", size=14, aria_hidden="true"),
            rx.text(f.path, weight="medium", size="2", font_family="var(--code-font-family)", min_width="0"),
            rx.cond(f.repo != "", rx.code(f.repo, size="1", variant="ghost")),
            rx.badge(f.label, color_scheme=f.color, variant="soft"),
            rx.spacer(),
            rx.text("+", f.added, size="1", color=rx.color("green", 11)),
            rx.text("-", f.removed, size="1", color=rx.color("red", 11)),
            align="center",
            spacing="2",
            wrap="wrap",
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
            # A region that scrolls sideways takes the keyboard too.
            tab_index=0,
            role="region",
            aria_label="Diff of " + f.path,
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
                rx.heading(s.name, size="4", as_="h2"),
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
                    "This Step would not change anything for this Candidate.", size="2", color=rx.color("gray", 11)
                ),
            ),
            rx.foreach(s.files, diff_file),
            spacing="3",
            width="100%",
        ),
        width="100%",
        data_testid="preview-step",
    )


def _inputs() -> rx.Component:
    """The Migration's inputs, as a Run would get them; the preview follows what is typed, after a short pause."""
    return rx.cond(
        P.inputs.length() > 0,
        rx.card(
            rx.vstack(
                rx.hstack(
                    rx.heading("Inputs", size="3", as_="h2"),
                    rx.cond(
                        P.running,
                        rx.hstack(
                            rx.spinner(size="1"),
                            rx.text("Updating the preview…", size="1", color=rx.color("gray", 11)),
                            spacing="1",
                            align="center",
                            data_testid="preview-running",
                        ),
                    ),
                    align="center",
                    spacing="3",
                    wrap="wrap",
                ),
                rx.text(
                    "Try values here: the preview updates as you type. Nothing is saved; Start uses them.",
                    size="1",
                    color=rx.color("gray", 11),
                ),
                rx.grid(
                    rx.foreach(
                        P.inputs,
                        lambda i: input_field(i, lambda v: P.set_input(i.name, v), debounce_timeout=RERUN_AFTER_MS),
                    ),
                    columns=rx.breakpoints(initial="1", md="2"),
                    spacing="3",
                    width="100%",
                ),
                spacing="2",
                width="100%",
            ),
            width="100%",
            margin_bottom="16px",
            data_testid="preview-inputs",
        ),
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
            rx.heading("Preview of ", P.candidate_id, size=rx.breakpoints(initial="6", sm="7"), as_="h1"),
            "What a Run would change, as the Migrator's dry run reports it. Nothing is written.",
            rx.cond(
                P.candidate_status == "not_started",
                operator_only(
                    rx.button(
                        rx.icon("play", size=14),
                        "Start",
                        on_click=P.start,
                        loading=P.busy,
                        disabled=viewer_locked(P.busy | P.inputs_have_errors),
                        data_testid="preview-start",
                    )
                ),
            ),
            margin_bottom="18px",
        ),
        _inputs(),
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
