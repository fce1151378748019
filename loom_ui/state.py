"""State every page shares: the Needs me count in the navigation, the service handle, live polling.

Imports no pages. Handlers reach Loom only through `LoomService` (never SQL or the ExecutionEngine).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import reflex as rx

from loom_backend import errors
from loom_backend.bootstrap import current
from loom_backend.service import LoomService

POLL_SECONDS = 0.4
# A tab that went away (closed, lost its connection) stops its polling loop after this long.
DISCONNECTED_GRACE_SECONDS = 15.0


def service() -> LoomService:
    return current().service


def actor() -> str:
    """Who board actions are recorded as, until sign-in exists."""
    return current().settings.actor


def error_text(exc: BaseException) -> str:
    """The sentence an operator sees when an action fails: Loom's own message when it has one."""
    if isinstance(exc, errors.LoomError):
        return str(exc)
    return f"Loom could not do that ({type(exc).__name__}: {exc}). Try again, or check the server log."


def _client_connected(token: str) -> bool:
    with contextlib.suppress(Exception):
        from reflex.utils.prerequisites import get_app

        namespace = get_app().app.event_namespace
        if namespace is not None:
            return token in namespace.token_to_sid
    return True


@dataclass
class MetaPair:
    key: str
    value: str


class LoomState(rx.State):
    """The root of Loom's page states: what the navigation shows on every page."""

    needs_me_count: int = 0

    async def _count_needs_me(self) -> None:
        loom = current()
        self.needs_me_count = len(await loom.service.needs_me(loom.settings.open_pr_attention_hours))


class LiveMixin(rx.State, mixin=True):
    """A page that follows the read model: poll a cheap activity marker, reload only when it moved.

    One loop per open page: it ends when the tab navigates away, the page loads again, or the tab is gone.
    """

    loading: bool = True
    _watch_generation: int = 0

    def _live_scope(self) -> str | None:
        """The Migration whose changes this page shows; None for all of them."""
        return None

    async def _reload(self) -> None:
        """Read what the page shows from the service; called under the state lock."""

    async def _refresh_nav(self) -> None:
        """Recount the navigation's Needs me badge; called under the state lock."""

    @rx.event(background=True)
    async def watch(self):
        async with self:
            self._watch_generation += 1
            generation = self._watch_generation
            path = self.router.url.path
            token = self.router.session.client_token
            scope = self._live_scope()
        page_marker = everything = None
        gone_since: float | None = None
        while True:
            try:
                new_page_marker = await service().activity_marker(scope)
                new_everything = await service().activity_marker(None) if scope is not None else new_page_marker
            except Exception:
                new_page_marker, new_everything = page_marker, everything
            async with self:
                if self._watch_generation != generation or self.router.url.path != path:
                    return
                if page_marker is not None and new_page_marker != page_marker:
                    with contextlib.suppress(Exception):
                        await self._reload()
                if everything is not None and new_everything != everything:
                    with contextlib.suppress(Exception):
                        await self._refresh_nav()
            page_marker, everything = new_page_marker, new_everything
            if _client_connected(token):
                gone_since = None
            elif gone_since is None:
                gone_since = time.monotonic()
            elif time.monotonic() - gone_since > DISCONNECTED_GRACE_SECONDS:
                return
            await asyncio.sleep(POLL_SECONDS)
