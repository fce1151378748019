"""The Reflex app: the operator board, with Loom's HTTP API mounted under /api and Loom started in its lifespan.

Every page but /login asks `LoomState.require_sign_in` first; its own handlers load nothing for nobody.
"""

import reflex as rx

from loom_backend.api import create_api
from loom_backend.bootstrap import current_service, running
from loom_ui.pages.audit import AuditState, audit_page
from loom_ui.pages.board import BoardState, board_page
from loom_ui.pages.candidate import CandidateState, candidate_page
from loom_ui.pages.fleet import FleetState
from loom_ui.pages.inbox import InboxState, inbox_page
from loom_ui.pages.login import LoginState, login_page
from loom_ui.pages.metrics import MetricsState, MigrationMetricsState, metrics_page
from loom_ui.pages.migrations import MigrationsState, migrations_page
from loom_ui.pages.preview import PreviewState, preview_page
from loom_ui.pages.rollout import RolloutPageState, rollout_page
from loom_ui.state import LoomState, use_app, use_service

use_service(current_service)
app = rx.App(
    api_transformer=create_api(current_service),
    head_components=[rx.el.link(rel="icon", href="/favicon.svg", type="image/svg+xml")],
    stylesheets=["/loom.css"],
)
use_app(app)
app.register_lifespan_task(running)
app.add_page(
    migrations_page,
    route="/",
    title="Migrations · Loom",
    on_load=[LoomState.require_sign_in, MigrationsState.load, MigrationsState.watch],
)
app.add_page(
    board_page,
    route="/migrations/[migration_id]",
    title="Board · Loom",
    on_load=[
        LoomState.require_sign_in,
        BoardState.load,
        FleetState.load,
        BoardState.watch,
        MigrationMetricsState.load,
    ],
)
app.add_page(
    candidate_page,
    route="/migrations/[migration_id]/candidates/[candidate_id]",
    title="Candidate · Loom",
    on_load=[LoomState.require_sign_in, CandidateState.load, CandidateState.watch],
)
app.add_page(
    preview_page,
    route="/migrations/[migration_id]/preview/[candidate_id]",
    title="Preview · Loom",
    on_load=[LoomState.require_sign_in, PreviewState.load],
)
app.add_page(
    rollout_page,
    route="/migrations/[migration_id]/rollout",
    title="Rollout · Loom",
    on_load=[LoomState.require_sign_in, RolloutPageState.load, RolloutPageState.watch],
)
app.add_page(
    inbox_page,
    route="/inbox",
    title="Needs me · Loom",
    on_load=[LoomState.require_sign_in, InboxState.load, InboxState.watch],
)
app.add_page(
    metrics_page,
    route="/metrics",
    title="Metrics · Loom",
    on_load=[LoomState.require_sign_in, MetricsState.load, MetricsState.watch],
)
app.add_page(
    audit_page,
    route="/audit",
    title="Audit · Loom",
    on_load=[LoomState.require_sign_in, AuditState.load],
)
app.add_page(
    audit_page,
    route="/migrations/[migration_id]/audit",
    title="Audit · Loom",
    on_load=[LoomState.require_sign_in, AuditState.load],
)
app.add_page(login_page, route="/login", title="Sign in · Loom", on_load=LoginState.load)
