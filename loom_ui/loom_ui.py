"""The Reflex app: the operator board, with Loom's HTTP API mounted under /api and Loom started in its lifespan."""

import reflex as rx

from loom_backend.api import create_api
from loom_backend.bootstrap import current_service, running


def index() -> rx.Component:
    return rx.center(rx.heading("Loom"), height="100vh")


app = rx.App(
    api_transformer=create_api(current_service),
)
app.register_lifespan_task(running)
app.add_page(index, route="/", title="Migrations · Loom")
