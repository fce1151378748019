"""The registry API on a real store, for bench/announce.py (the registry routes never reach the engine)."""

import sys

import uvicorn

from loom_backend.api import create_api
from loom_backend.service import LoomService
from loom_backend.store.sql_store import SqlStore


class NoEngine:
    """Announcing and reading never start Runs; anything else is a bench bug."""

    def __getattr__(self, name: str):
        raise RuntimeError(f"the registry bench does not use the engine ({name})")


def main() -> None:
    url, port = sys.argv[1], int(sys.argv[2])
    store = SqlStore(url)
    store.upgrade_schema()
    service = LoomService(store, NoEngine(), NoEngine())  # type: ignore[arg-type]
    uvicorn.run(create_api(lambda: service), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
