"""The registry API on a real store, for bench/announce.py (the registry routes never reach the engine)."""

import os
import sys

import uvicorn

from loom_backend.api import create_api
from loom_backend.auth import AccessControl, parse_provisioned_tokens
from loom_backend.migrator_client import HttpMigratorNotifier
from loom_backend.service import LoomService
from loom_backend.store.auth_store import SqlAuthStore
from loom_backend.store.sql_store import SqlStore


class NoEngine:
    """Announcing and reading never start Runs; anything else is a bench bug."""

    def __getattr__(self, name: str):
        raise RuntimeError(f"the registry bench does not use the engine ({name})")


def main() -> None:
    url, port = sys.argv[1], int(sys.argv[2])
    store = SqlStore(url)
    store.upgrade_schema()
    access = AccessControl(SqlAuthStore(store.engine))
    for token in parse_provisioned_tokens(os.environ["LOOM_BOOTSTRAP_TOKENS"]):
        access.provision_token(token)
    service = LoomService.over(store, NoEngine(), HttpMigratorNotifier(), access)  # type: ignore[arg-type]
    app = create_api(lambda: service)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
