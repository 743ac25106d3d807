"""The upstream side of the gateway: everything that costs an upstream request.

Forwarding a request with the caller's credentials (gateway.upstream.proxy),
checking who a caller is (gateway.upstream.identity), reading a write back
(gateway.upstream.readback), and fetching a detail a download lacks.  All
of it spends what every client shares, so each is bounded globally and
per client (gateway.upstream.clients).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol

from aiohttp import web
from cachetools import TTLCache

from gateway.api.routing import ApiRoute, SiteRoute
from gateway.responses import Answer
from gateway.settings import GatewaySettings
from gateway.upstream import readback
from gateway.upstream.clients import PerClient, client_key
from gateway.upstream.identity import ANONYMOUS, Caller, Credentials, Identities
from gateway.upstream.proxy import Proxy
from mirror.reader import Reader
from mirror.resources import RESOURCES

if TYPE_CHECKING:
    from gateway.ops.metrics import Counts

WRITES = frozenset(("POST", "PUT", "PATCH", "DELETE"))
#: Details one download may read upstream at once, when the mirror lacks them.
MAX_FETCHED = 64
#: Downloads of one client fetching what the mirror lacks, at once.
FETCHES_PER_CLIENT = 2
#: Objects a fetch could not bring are not fetched again for this long
#: (a patch gone upstream that a series still lists, say), nor are more
#: than this many remembered.
UNFETCHABLE_SECONDS = 300.0
MAX_UNFETCHABLE = 10_000


class Asking(Protocol):
    """What forwarding needs to know of a request (the pipeline's
    ``gateway.http.context.Asking`` is one)."""

    request: web.Request
    origin: str
    read: bool
    credentials: Credentials | None
    route: ApiRoute | None
    site: SiteRoute | None

    @property
    def client(self) -> str: ...

    @property
    def private(self) -> bool: ...


class Forwarding:
    """What the gateway asks upstream, on callers' behalf."""

    def __init__(self, settings: GatewaySettings, reader: Reader, counts: Counts) -> None:
        self.reader = reader
        self.counts = counts
        self.proxy = Proxy(
            settings.upstream, timeout=settings.upstream_timeout, record=counts.upstream_call
        )
        self.identities = Identities(self.proxy, reader)
        args = (settings.mirror, settings.upstream, settings.token, settings.upstream_timeout)
        #: Writes read back, and details downloads lack: each its own bound,
        #: so that downloads never crowd read-backs out.
        self.readback = readback.ReadBack(*args)
        self.details = readback.ReadBack(*args)
        self._fetching = PerClient(FETCHES_PER_CLIENT)
        self._unfetchable: TTLCache[tuple[str, int], bool] = TTLCache(
            MAX_UNFETCHABLE, UNFETCHABLE_SECONDS
        )

    async def close(self) -> None:
        await self.identities.close()
        await self.proxy.close()
        await self.readback.close()
        await self.details.close()

    def busy(self, answer: Answer) -> bool:
        """Whether ``answer`` is the refusal for want of a forwarding slot."""
        return answer is self.proxy.busy

    async def who(self, ctx: Asking) -> Caller:
        """The caller, as upstream knows them (gateway.upstream.identity)."""
        if ctx.credentials is None:
            return ANONYMOUS
        res = ctx.route.resource if ctx.route is not None else None
        sensitive = res is not None and res.requires_auth
        return await self.identities.who(ctx.credentials, ctx.client, sensitive)

    async def forward(self, ctx: Asking) -> Answer:
        """Upstream's answer to the request, with the caller's credentials;
        a write it accepted is read back into the mirror first."""
        answer = await self.proxy.forward(ctx.request, ctx.origin, ctx.client)
        creds, route = ctx.credentials, ctx.route
        if creds is not None:
            if ctx.read and answer.status == 200 and route and route.resource is RESOURCES["users"]:
                self.identities.learn(creds, answer.body)  # whose token this is
            elif answer.status == 401 or (answer.status == 403 and b"Invalid" in answer.body):
                self.identities.forget(creds)  # revoked since it was checked
        if ctx.request.method in WRITES:
            await self._read_back(ctx, answer)
        return answer

    async def _read_back(self, ctx: Asking, answer: Answer) -> None:
        """Before answering a write, refresh what it changed."""
        if ctx.route is not None and 200 <= answer.status < 300:
            want, events = readback.wanted(ctx.request.method, ctx.route, answer.body)
        elif (
            ctx.site is not None
            and ctx.site.kind == "forward"
            and ctx.private
            and answer.status == 200
            and readback.xmlrpc_succeeded(answer.body)
        ):
            # XML-RPC answers faults (refused credentials among them) with a
            # 200: only a result, to a caller with credentials, changed anything.
            want, events = readback.xmlrpc_wanted(await ctx.request.read())
        else:
            return
        if want and await self._timed(self.readback.refresh(want, events)):
            self.reader.check_changes()  # drop the caches now, not at the next tick

    async def fetch_details(self, ctx: Asking, refs: tuple[tuple[str, int], ...]) -> bool:
        """Read into the mirror the details a download lacks; whether done.

        At most :data:`MAX_FETCHED` at once and a few per client; what a
        fetch did not bring is not asked again for a while."""
        wanted = [ref for ref in refs if ref not in self._unfetchable][:MAX_FETCHED]
        client = client_key(ctx.client)
        if not wanted or not self._fetching.enter(client):
            return False
        try:
            done = await self._timed(self.details.details(wanted))
        finally:
            self._fetching.leave(client)
        if done:
            self.reader.check_changes()  # (the caches hold what was missing)
        return bool(done)

    def unfetchable(self, refs: tuple[tuple[str, int], ...]) -> None:
        """A fetch of these did not cure the download: leave them for a while."""
        for ref in refs:
            self._unfetchable[ref] = True

    async def _timed(self, refresh: Awaitable[bool | None]) -> bool | None:
        """``refresh``, counted for the metrics."""
        started = time.perf_counter()
        done = await refresh
        outcome = "skipped" if done is None else "done" if done else "failed"
        self.counts.upstream_call("readback", outcome, time.perf_counter() - started)
        return done
