"""Reflex configuration: the board and the /api routes are served by one process on one port.

With LOOM_REDIS_URL, page state lives in Redis, so several replicas behind one LOOM_PUBLIC_URL serve any operator.
"""

import os

import reflex as rx

PORT = int(os.environ.get("LOOM_PORT", "3000"))
# Reflex picks the npm registry for its frontend packages by timing registry.npmjs.org against
# registry.npmmirror.com, and logs "Failed to connect to ..." for each probe that fails (three on every start
# where the mirror is unreachable). Naming the registry skips the probe; npm's own setting still wins.
os.environ.setdefault("NPM_CONFIG_REGISTRY", "https://registry.npmjs.org")

config = rx.Config(
    app_name="loom_ui",
    telemetry_enabled=False,
    frontend_port=PORT,
    backend_port=PORT,
    api_url=os.environ.get("LOOM_PUBLIC_URL", f"http://localhost:{PORT}"),
    redis_url=os.environ.get("LOOM_REDIS_URL") or None,
    show_built_with_reflex=False,
    plugins=[
        rx.plugins.RadixThemesPlugin(theme=rx.theme(appearance="inherit", accent_color="indigo", radius="medium"))
    ],
    disable_plugins=[rx.plugins.SitemapPlugin],
)
