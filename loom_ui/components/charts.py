"""Metrics charts and counters: Recharts drawn in Radix theme colours, so light and dark mode both read."""

from __future__ import annotations

import reflex as rx

# Theme variables rather than hex colours: Radix swaps them when the colour mode changes.
TEXT = "var(--gray-11)"
GRID = "var(--gray-5)"
AXIS = "var(--gray-7)"
ANIMATION_MS = 400

TICK = {"fill": TEXT, "fontSize": 12}
TOOLTIP_BOX = {
    "background": "var(--color-panel-solid)",
    "border": "1px solid var(--gray-6)",
    "borderRadius": "var(--radius-3)",
    "boxShadow": "var(--shadow-3)",
    "fontSize": "12px",
}


def _grid() -> rx.Component:
    return rx.recharts.cartesian_grid(stroke=GRID, stroke_dasharray="3 3", vertical=False)


def _tooltip() -> rx.Component:
    return rx.recharts.graphing_tooltip(
        content_style=TOOLTIP_BOX,
        label_style={"color": "var(--gray-12)", "fontWeight": 600},
        cursor={"fill": "var(--gray-a3)", "stroke": "var(--gray-a6)"},
    )


def _legend() -> rx.Component:
    return rx.recharts.legend(
        icon_type="circle",
        icon_size=8,
        # itemSorter null: the series in the order the chart draws them, not alphabetical.
        custom_attrs={"wrapperStyle": {"fontSize": "12px", "color": TEXT}, "itemSorter": rx.Var("null")},
    )


def _x_axis(**props) -> rx.Component:
    return rx.recharts.x_axis(tick=TICK, stroke=AXIS, tick_line=False, min_tick_gap=16, **props)


def _y_axis(**props) -> rx.Component:
    return rx.recharts.y_axis(tick=TICK, stroke=AXIS, tick_line=False, axis_line=False, **props)


# Recharts 3 makes every chart a Tab stop with no name; the card around it names it instead (role="img").
NOT_FOCUSABLE = {"accessibilityLayer": False}
CHAR_PX = 7.5


def axis_width(longest_label: int) -> int:
    """A y-axis wide enough for its longest tick label at the 12 px tick font, so none is cut off."""
    return int(longest_label * CHAR_PX) + 14


def activity_chart(rows, height: int = 260) -> rx.Component:
    """Runs started and completed as bars, Steps completed and failed as lines, one group per day."""
    return rx.recharts.composed_chart(
        _grid(),
        _x_axis(data_key="day"),
        _y_axis(allow_decimals=False, width=36),
        _tooltip(),
        _legend(),
        rx.recharts.bar(
            data_key="runs_started",
            name="Runs started",
            fill="var(--accent-9)",
            radius=[3, 3, 0, 0],
            max_bar_size=18,
            animation_duration=ANIMATION_MS,
        ),
        rx.recharts.bar(
            data_key="runs_completed",
            name="Runs completed",
            fill="var(--green-9)",
            radius=[3, 3, 0, 0],
            max_bar_size=18,
            animation_duration=ANIMATION_MS,
        ),
        rx.recharts.line(
            data_key="steps_completed",
            name="Steps completed",
            stroke="var(--cyan-10)",
            stroke_width=2,
            dot=False,
            type_="linear",
            animation_duration=ANIMATION_MS,
        ),
        rx.recharts.line(
            data_key="steps_failed",
            name="Steps failed",
            stroke="var(--red-9)",
            stroke_width=2,
            dot=False,
            type_="linear",
            animation_duration=ANIMATION_MS,
        ),
        data=rows,
        height=height,
        bar_gap=2,
        margin={"top": 8, "right": 8, "left": 0, "bottom": 0},
        custom_attrs=NOT_FOCUSABLE,
    )


def step_duration_chart(rows, unit, height: int = 260, label_width=110) -> rx.Component:
    """One row per Step: the typical (p50) and the slow (p95) successful duration, side by side."""
    return rx.recharts.bar_chart(
        rx.recharts.cartesian_grid(stroke=GRID, stroke_dasharray="3 3", horizontal=False),
        rx.recharts.x_axis(type_="number", tick=TICK, stroke=AXIS, tick_line=False, unit=" " + unit),
        rx.recharts.y_axis(
            data_key="step",
            type_="category",
            tick=TICK,
            stroke=AXIS,
            tick_line=False,
            axis_line=False,
            width=label_width,
        ),
        _tooltip(),
        _legend(),
        rx.recharts.bar(
            data_key="p50",
            name="p50",
            unit=" " + unit,
            fill="var(--accent-9)",
            radius=[0, 3, 3, 0],
            max_bar_size=14,
            animation_duration=ANIMATION_MS,
        ),
        rx.recharts.bar(
            data_key="p95",
            name="p95",
            unit=" " + unit,
            fill="var(--amber-9)",
            radius=[0, 3, 3, 0],
            max_bar_size=14,
            animation_duration=ANIMATION_MS,
        ),
        data=rows,
        layout="vertical",
        height=height,
        bar_gap=2,
        margin={"top": 8, "right": 16, "left": 0, "bottom": 0},
        custom_attrs=NOT_FOCUSABLE,
    )


def burndown_chart(rows, dots=False, height: int = 180, legend: bool = True, y_width=36) -> rx.Component:
    """Candidates not completed at the end of each day; a dashed line carries today's pace to zero."""
    return rx.recharts.composed_chart(
        _grid(),
        _x_axis(data_key="day"),
        _y_axis(allow_decimals=False, width=y_width),
        _tooltip(),
        *([_legend()] if legend else []),
        rx.recharts.area(
            data_key="remaining",
            name="Remaining",
            stroke="var(--accent-9)",
            fill="var(--accent-a4)",
            stroke_width=2,
            type_="linear",
            dot=rx.cond(dots, {"r": 3, "fill": "var(--accent-9)", "strokeWidth": 0}, False),
            animation_duration=ANIMATION_MS,
        ),
        rx.recharts.line(
            data_key="projected",
            name="Projected",
            stroke="var(--gray-10)",
            stroke_dasharray="5 4",
            stroke_width=2,
            dot=False,
            animation_duration=ANIMATION_MS,
        ),
        data=rows,
        height=height,
        margin={"top": 8, "right": 8, "left": 0, "bottom": 0},
        custom_attrs=NOT_FOCUSABLE,
    )


STATE_AREAS = (
    ("failed", "Failed", "var(--red-9)", "var(--red-a6)"),
    ("running", "Running", "var(--blue-9)", "var(--blue-a5)"),
    ("notStarted", "Not started", "var(--gray-9)", "var(--gray-a5)"),
    ("completed", "Completed", "var(--green-9)", "var(--green-a5)"),
)


def state_burndown_chart(rows, height: int = 180, y_width=36) -> rx.Component:
    """Candidates by state, stacked (failed, running, not started, completed) per hour or day; the dashed line
    carries the recent pace from the top of the not-completed stack to zero."""
    return rx.recharts.composed_chart(
        _grid(),
        _x_axis(data_key="t"),
        _y_axis(allow_decimals=False, width=y_width),
        _tooltip(),
        _legend(),
        *[
            rx.recharts.area(
                data_key=key,
                name=name,
                stack_id="states",
                stroke=stroke,
                fill=fill,
                stroke_width=1,
                type_="step",
                animation_duration=ANIMATION_MS,
            )
            for key, name, stroke, fill in STATE_AREAS
        ],
        rx.recharts.line(
            data_key="projected",
            name="Projected",
            stroke="var(--gray-11)",
            stroke_dasharray="5 4",
            stroke_width=2,
            dot=False,
            animation_duration=ANIMATION_MS,
        ),
        data=rows,
        height=height,
        margin={"top": 8, "right": 8, "left": 0, "bottom": 0},
        custom_attrs=NOT_FOCUSABLE,
    )


def chart_card(title: str, subtitle, chart: rx.Component, has_data, empty_text: str, **props) -> rx.Component:
    """A titled card holding one chart, or a quiet sentence when there is nothing to draw yet."""
    return rx.card(
        rx.vstack(
            rx.vstack(
                rx.heading(title, size="3", as_="h2"),
                rx.cond(subtitle != "", rx.text(subtitle, size="1", color=rx.color("gray", 11))),
                spacing="1",
            ),
            rx.cond(
                has_data,
                rx.box(chart, width="100%", role="img", aria_label=title, data_testid="chart"),
                rx.center(
                    rx.vstack(
                        rx.icon("chart-no-axes-column", size=22, color=rx.color("gray", 8)),
                        rx.text(empty_text, size="2", color=rx.color("gray", 11), text_align="center"),
                        align="center",
                        spacing="2",
                    ),
                    height="160px",
                    width="100%",
                    border=f"1px dashed {rx.color('gray', 6)}",
                    border_radius="var(--radius-3)",
                    data_testid="chart-empty",
                ),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
        **props,
    )


def counter_tile(c, compact: bool = False) -> rx.Component:
    """One figure: `c` has key, label, value, hint and color (a Radix scale); compact for the board's panel."""
    hint = rx.text(c.hint, size="1", color=rx.color("gray", 11))
    return rx.box(
        rx.text(c.label, size="1", color=rx.color("gray", 11), weight="medium", trim="both"),
        rx.text(
            c.value,
            size="4" if compact else "6",
            weight="bold",
            color=rx.match(
                c.color, ("red", rx.color("red", 11)), ("amber", rx.color("amber", 11)), rx.color("gray", 12)
            ),
            data_testid="counter-value",
        ),
        rx.cond(c.hint != "", hint) if compact else rx.cond(c.hint != "", hint, rx.text("\u00a0", size="1")),
        padding="6px 10px" if compact else "12px 14px",
        background=rx.color("gray", 1),
        border=f"1px solid {rx.color('gray', 5)}",
        border_top=rx.match(
            c.color,
            ("red", f"3px solid {rx.color('red', 9)}"),
            ("amber", f"3px solid {rx.color('amber', 9)}"),
            f"{1 if compact else 3}px solid {rx.color('gray', 5)}",
        ),
        border_radius="var(--radius-3)",
        data_testid="counter",
        data_counter=c.key,
        min_width="0",
    )
