"""Nothing a page's watch loop or an HTTP request does per call may grow process state: a slow leak of that kind
made a long-running Loom slower the longer operators watched it (issue 13)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

import httpx

from loom_ui.state import _client_connected


class ImportRecorder(importlib.abc.MetaPathFinder):
    """Sees every import that sys.modules could not answer: each one walks sys.path."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        self.names.append(fullname)
        return None


def test_checking_whether_a_tab_is_connected_does_not_grow_sys_path() -> None:
    _client_connected("a-token")  # the first call may resolve the app once
    before = list(sys.path)
    for _ in range(200):
        _client_connected("a-token")
    assert sys.path == before


async def _answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
    writer.close()


async def test_an_http_request_imports_nothing_anew() -> None:
    server = await asyncio.start_server(_answer_ok, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    recorder = ImportRecorder()
    try:
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).text == "ok"  # the first request may import lazily, once
            sys.meta_path.insert(0, recorder)
            for _ in range(20):
                assert (await client.get(url)).text == "ok"
    finally:
        if recorder in sys.meta_path:
            sys.meta_path.remove(recorder)
        server.close()
    assert recorder.names == []
