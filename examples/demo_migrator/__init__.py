"""The demo Migrator: upgrades the base image of ~25 generated sample service repositories.

python -m examples.demo_migrator --port 8050 --loom-url http://localhost:3000 --data-dir data/demo
"""

from examples.demo_migrator.migrator import APP_NAME, MIGRATION_ID, build_demo_migrator

__all__ = ["APP_NAME", "MIGRATION_ID", "build_demo_migrator", "run_demo_migrator"]


def run_demo_migrator(
    port: int = 8050,
    loom_url: str = "http://localhost:3000",
    data_dir: str = "data/demo",
    merge_delay: float = 5.0,
    host: str = "0.0.0.0",
) -> None:
    """Build the demo Migrator and serve it until interrupted (blocking)."""
    build_demo_migrator(port=port, loom_url=loom_url, data_dir=data_dir, merge_delay=merge_delay).run(port, host)
