"""The sign-in page: a plain HTML form the browser posts to /api/auth/login-form.

A real form POST rather than a websocket event, so the server's answer sets the HttpOnly `loom_session` cookie
and the next page load opens its websocket with it; the password never passes through Reflex state.
"""

from __future__ import annotations

import reflex as rx
from reflex_base.vars.base import Var
from reflex_components_core.el.elements.forms import BaseHTML

from loom_backend.domain import local_path
from loom_ui.state import LoomState


class PostForm(BaseHTML):
    """A `<form>` the browser submits itself: rx.el.form always prevents the default submit."""

    tag = "form"
    action: Var[str]
    method: Var[str]


class LoginState(LoomState):
    next_path: str = "/"
    failed: bool = False
    username: str = ""
    ready: bool = False

    @rx.event
    async def load(self):
        params = self.router.url.query_parameters
        self.next_path = local_path(params.get("next", "/"))
        self.failed = params.get("failed") == "1"
        self.username = params.get("username", "")[:128]
        if not self.failed and await self._principal() is not None:
            return rx.redirect(self.next_path)
        self.ready = True
        return None


L = LoginState


def _field(label: str, name: str, **props) -> rx.Component:
    return rx.vstack(
        rx.el.label(rx.text(label, size="2", weight="medium"), html_for="login-" + name),
        rx.input(
            id="login-" + name, name=name, size="3", width="100%", required=True, data_testid="login-" + name, **props
        ),
        spacing="1",
        width="100%",
    )


def _form() -> rx.Component:
    return PostForm.create(
        rx.vstack(
            rx.cond(
                L.failed,
                rx.callout(
                    "Wrong username or password. Check both and try again.",
                    icon="triangle-alert",
                    color_scheme="red",
                    size="1",
                    width="100%",
                    role="alert",
                    data_testid="login-error",
                ),
            ),
            _field(
                "Username",
                "username",
                default_value=L.username,
                auto_complete="username",
                auto_focus=~L.failed,
                max_length=128,
            ),
            _field("Password", "password", type="password", auto_complete="current-password", auto_focus=L.failed),
            rx.el.input(type="hidden", name="next", value=L.next_path),
            rx.button("Sign in", type="submit", size="3", width="100%", margin_top="4px", data_testid="login-submit"),
            spacing="4",
            width="100%",
        ),
        action="/api/auth/login-form",
        method="post",
        width="100%",
    )


def login_page() -> rx.Component:
    return rx.el.main(
        rx.center(
            rx.vstack(
                rx.hstack(
                    rx.icon("waypoints", size=28, color=rx.color("accent", 10)),
                    rx.text("Loom", size="7", weight="bold"),
                    spacing="2",
                    align="center",
                ),
                rx.card(
                    rx.vstack(
                        rx.vstack(
                            rx.heading("Sign in", size="5", as_="h1"),
                            rx.text("Operators drive Runs; viewers follow them.", size="2", color=rx.color("gray", 11)),
                            spacing="1",
                        ),
                        rx.cond(L.ready, _form(), rx.skeleton(height="196px", width="100%")),
                        spacing="5",
                        width="100%",
                    ),
                    size="4",
                    width="100%",
                ),
                rx.text(
                    "No account? An admin adds one with ",
                    rx.code("loom user add NAME --role operator"),
                    ". On a first start, ",
                    rx.code("loom up"),
                    " printed the admin's password.",
                    size="1",
                    color=rx.color("gray", 11),
                    text_align="center",
                ),
                spacing="5",
                align="center",
                width="100%",
                max_width="400px",
            ),
            min_height="100vh",
            padding=["12px", "24px"],
            background=rx.color("gray", 2),
        )
    )
