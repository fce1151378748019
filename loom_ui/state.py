"""State every page shares: who is signed in, the Needs me count in the navigation, the service handle, live updates.

Imports no pages. Handlers reach Loom only through `LoomService` (never SQL or the ExecutionEngine), and act as the
principal the request's `loom_session` cookie (or the authenticating proxy's header) names; the service authenticates
them as it does every HTTP caller, and decides what they may do.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping

import reflex as rx

from loom_backend import errors
from loom_backend.domain import Credentials, Principal, PrincipalKind, ReadModelChange, Role
from loom_backend.service import LoomService
from loom_ui import format as fmt

# A page's watch looks at its own state (still open? navigated away?) this often when nothing changes.
CHECK_SECONDS = 2.0
# The navigation's count and a page's panels follow changes at most this often.
SLOW_SECONDS = 2.0
# A tab that went away (closed, lost its connection) stops its polling loop after this long.
DISCONNECTED_GRACE_SECONDS = 15.0
# A page of one Migration reloads at once after a quiet spell, then at most once per this interval while changes
# keep coming (a hundred Runs progressing would otherwise reload, and re-send, every open board on every write).
LIVE_SECONDS = 0.2


def _tick(now: float, every: float) -> float:
    """The start of the interval `now` falls in, on the process's one clock: every open page reloads at the same
    moments, so their reads are shared (`LoomService.sharing_reads`)."""
    return math.floor(now / every) * every


_service_provider: Callable[[], LoomService] | None = None


def use_service(provider: Callable[[], LoomService]) -> None:
    """The app module says where the running service comes from; pages never build or look one up."""
    global _service_provider
    _service_provider = provider


def service() -> LoomService:
    if _service_provider is None:
        raise RuntimeError("The app module has not wired the service yet (loom_ui.state.use_service)")
    return _service_provider()


VIEWERS_CANT = "Viewers can't change Runs"
VIEWER_NOTICE = (
    "You are signed in as a viewer: you can follow Runs and preview them; starting, reviewing and cancelling "
    "need the operator role, which an admin can give you."
)


async def principal_of(raw_headers: Mapping[str, str], cookie: str) -> Principal | None:
    """Who sent these websocket headers, as the service authenticates every caller; None when nobody is signed in."""
    loom = service()
    proxy = loom.proxy_header
    credentials = Credentials(
        proxy_user=(raw_headers.get(proxy.lower()) or None) if proxy else None,
        session=fmt.cookie_value(cookie, loom.session_cookie) or None,
    )
    try:
        return await loom.authenticate(credentials)
    except errors.Unauthenticated:
        return None


def error_text(exc: BaseException) -> str:
    """The sentence an operator sees when an action fails: Loom's own message when it has one."""
    if isinstance(exc, errors.LoomError):
        return str(exc)
    return f"Loom could not do that ({type(exc).__name__}: {exc}). Try again, or check the server log."


_app: rx.App | None = None


def use_app(app: rx.App) -> None:
    """The app module hands over the app, so the watch loop can ask whether a tab is still connected.

    Never Reflex's `get_app()`: it inserts the working directory into `sys.path` on every call, and a
    per-tick call grew `sys.path` without bound (every failed import then walked all of it).
    """
    global _app
    _app = app


def _client_connected(token: str) -> bool:
    namespace = _app.event_namespace if _app is not None else None
    return namespace is None or token in namespace.token_to_sid


class LoomState(rx.State):
    """The root of Loom's page states: who is signed in, and what the navigation shows on every page."""

    needs_me_count: int = 0
    user_name: str = ""
    user_role: str = ""
    user_via_proxy: bool = False
    # Who `_signed_in` found, kept apart from the vars above that the browser is sent; reads act as them.
    _who_name: str = ""
    _who_kind: str = ""
    _who_role: str = ""

    def _show(self, **values: object) -> None:
        """Assign only the vars whose value changed: Reflex sends every assigned var to the browser whole, equal or
        not, and each open tab reloads on every change it follows."""
        for name, value in values.items():
            if self.get_value(name) != value:
                setattr(self, name, value)

    @rx.var
    def can_operate(self) -> bool:
        return self.user_role in (Role.OPERATOR.value, Role.ADMIN.value)

    async def _principal(self) -> Principal | None:
        headers = self.router.headers
        return await principal_of(dict(headers.raw_headers), headers.cookie)

    def _viewer(self) -> Principal:
        """Who this page reads as: the principal `_signed_in` resolved last (no query of its own)."""
        if not self._who_kind:
            raise errors.Unauthenticated("Your sign-in has ended; reload the page and sign in again")
        return Principal(
            self._who_name, PrincipalKind(self._who_kind), Role(self._who_role) if self._who_role else None
        )

    async def _signed_in(self) -> bool:
        """Resolve who is signed in and remember it for the navigation; every page handler asks this itself,
        since Reflex does not promise to finish `require_sign_in` before a page's background `watch` starts."""
        principal = await self._principal()
        self.user_name = principal.name if principal else ""
        self.user_role = principal.role.value if principal and principal.role else ""
        self.user_via_proxy = principal is not None and principal.kind == PrincipalKind.PROXY_USER
        self._who_name = self.user_name
        self._who_kind = principal.kind.value if principal else ""
        self._who_role = self.user_role
        return principal is not None

    @rx.event
    async def require_sign_in(self):
        """First on every page: send a browser nobody signed in to the sign-in page, to come back afterwards."""
        if not await self._signed_in():
            return rx.redirect(fmt.login_href(self.router.url.path, self.router.url.query))
        return None

    async def _actor(self) -> Principal:
        """Who an action is taken as, resolved afresh: a session may have ended since the page loaded. The service
        decides whether they may; its refusal of a viewer is put in the words the page's disabled buttons use."""
        principal = await self._principal()
        if principal is None:
            raise errors.Unauthenticated("Your sign-in has ended; reload the page and sign in again")
        try:
            LoomService.authorize(principal, Role.OPERATOR)
        except errors.Forbidden:
            raise errors.Forbidden(
                f"{VIEWERS_CANT}: {principal.name} is a viewer; an admin can give you the operator role"
            ) from None
        return principal

    async def _count_needs_me(self) -> None:
        who = self._viewer()
        self.needs_me_count = len(await service().needs_me(who)) + len(await service().rollouts_waiting(who))


class LiveMixin(rx.State, mixin=True):
    """A page that follows the read model: it waits on the process's change feed and reloads what changed.

    One subscription per open page, no polling: it ends when the tab navigates away, the page loads again, or the
    tab is gone. Changes that concern the page reach `_reload_live` at once after a quiet spell, then at most every
    LIVE_SECONDS (pages over every Migration once a second); `_reload_slow` (the navigation's count, panels) at most
    every SLOW_SECONDS. Intervals start on the process's clock, so all tabs reload together and share their reads.
    """

    loading: bool = True
    _watch_generation: int = 0

    def _live_scope(self) -> str | None:
        """The Migration whose changes this page shows; None for all of them."""
        return None

    def _live_candidate(self) -> str | None:
        """The one Candidate of the Migration this page shows; None for all of them."""
        return None

    async def _reload(self) -> None:
        """Read what the page shows from the service; called under the state lock."""

    async def _reload_live(self, changes: list[ReadModelChange]) -> None:
        """Reload after these changes to what the page shows; a page that can reload less than all overrides it."""
        await self._reload()

    async def _reload_slow(self) -> None:
        """What may lag a little behind changes anywhere: the navigation's count; a page with panels adds theirs."""
        await self._refresh_nav()

    async def _refresh_nav(self) -> None:
        """Recount the navigation's Needs me badge; called under the state lock."""

    @rx.event(background=True)
    async def watch(self):
        async with self:
            if not await self._signed_in():
                return
            self._watch_generation += 1
            generation = self._watch_generation
            path = self.router.url.path
            token = self.router.session.client_token
            scope, only = self._live_scope(), self._live_candidate()
            who = self._viewer()
        live_every = LIVE_SECONDS if scope is not None else 1.0
        with service().follow_changes(who) as feed:
            pending: list[ReadModelChange] = []
            slow_due = False
            last_live = last_slow = last_check = time.monotonic()
            gone_since: float | None = None
            while True:
                now = time.monotonic()
                wait = CHECK_SECONDS
                if pending:
                    wait = min(wait, max(0.0, _tick(now, live_every) + live_every - now))
                if slow_due:
                    wait = min(wait, max(0.0, _tick(now, SLOW_SECONDS) + SLOW_SECONDS - now))
                changes = await feed.next(wait)
                pending += [c for c in changes if c.concerns(scope, only)]
                slow_due = slow_due or bool(changes)
                now = time.monotonic()
                live_now = bool(pending) and last_live < _tick(now, live_every)
                slow_now = slow_due and last_slow < _tick(now, SLOW_SECONDS)
                if live_now or slow_now or now - last_check >= CHECK_SECONDS:
                    last_check = now
                    async with self:
                        if self._watch_generation != generation or self.router.url.path != path:
                            return
                        # Tabs reloading together read the same: one query per process, not per tab, answered as
                        # fresh as the changes this tab has taken from its feed.
                        with service().sharing_reads(feed.seen):
                            if live_now:
                                batch, pending, last_live = pending, [], now
                                with contextlib.suppress(Exception):
                                    await self._reload_live(batch)
                            if slow_now:
                                slow_due, last_slow = False, now
                                with contextlib.suppress(Exception):
                                    await self._reload_slow()
                if _client_connected(token):
                    gone_since = None
                elif gone_since is None:
                    gone_since = time.monotonic()
                elif time.monotonic() - gone_since > DISCONNECTED_GRACE_SECONDS:
                    return
