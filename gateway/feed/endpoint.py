"""``GET /_gateway/changes``: the feed answered, held (long-poll) or streamed.

One request's path: who asks (credentials checked as for the API), what
it asks (gateway.feed.changes.asked), then one of

* JSON: the entries after ``since``, at once or, with ``wait``, as soon
  as there are some (the request is held until the mirror moves);
* server-sent events (``Accept: text/event-stream``): every entry as it
  comes, ``id:`` its cursor (a reconnecting client resumes with
  ``Last-Event-ID``), a comment every 15 s to keep the connection open.

Waiting costs no database connection: a held request or a stream sleeps
on one event the reader sets when the mirror moves, then reads the log
once.  Held requests and streams are bounded per process and per client
(beyond: 503 with ``Retry-After``); a stream whose client does not read
is dropped once its unsent bytes pass a bound (it resumes from its
cursor).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from gateway.feed import changes
from gateway.feed.changes import ANONYMOUS, REPLICA, Asked, FeedError, Page, Viewer, replica
from gateway.http.context import RequestContext
from gateway.http.negotiation import Choice
from gateway.http.state import GatewayState
from gateway.upstream.identity import THROTTLED, credentials
from mirror.dependencies import Changed
from mirror.feed import Windows, cursor
from mirror.reader import QueryTooSlow, ReaderBusy

log = logging.getLogger(__name__)

#: Seconds between keep-alive comments on an idle stream.
KEEPALIVE = 15.0
#: Unsent bytes a stream may have before its client is dropped (aiohttp
#: waits for the client past 64 KiB; a batch written at once is smaller
#: than the rest), and how long it may take to read what it was sent.
STREAM_BUFFER = 1 << 20
STREAM_BATCH_BYTES = STREAM_BUFFER // 2
WRITE_SECONDS = 10.0
#: Entries read at once for a stream.
STREAM_BATCH = 200
EVENT_STREAM = "text/event-stream"


class Feed:
    """The feed of one server process, and what waits on it."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.reader = state.reader
        self.windows = Windows(state.reader)
        self.most = state.settings.server.feed_waiting
        self.most_per_client = state.settings.server.feed_waiting_per_client
        self.waiting = 0
        self.by_client: dict[str, int] = {}
        self.closing = False
        #: Streams dropped for not reading what they were sent.
        self.dropped = 0
        self._moved = asyncio.Event()
        state.reader.on_change(self._changed)

    def _changed(self, _: list[Changed] | None = None) -> None:
        """The mirror moved: wake whatever waits."""
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def close(self, _: web.Application) -> None:
        """The server stops: end the streams and held requests."""
        self.closing = True
        self._changed()

    # -- the request's path -------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        origin = self.state.origin(request) or ""
        try:
            viewer = await self._who(request, origin)
            stream = EVENT_STREAM in request.headers.get("Accept", "")
            resumed = request.headers.get("Last-Event-ID") if stream else None
            asked = changes.asked(request.query, self.reader, resumed or None)
            if stream:
                return await self._stream(request, asked, viewer, origin)
            page = await self._page(request, asked, viewer, origin)
            answer = self._json(200, page.body())
            answer.enable_compression()  # (gzip, when the client accepts it)
            return answer
        except _Refused as exc:
            return self._json(exc.status, exc.body)
        except FeedError as exc:
            answer = self._json(exc.status, orjson.dumps({"detail": exc.detail}))
            if exc.status == 503:
                answer.headers["Retry-After"] = "5"
            return answer
        except (QueryTooSlow, ReaderBusy, sqlite3.Error) as exc:
            log.warning("the change feed cannot answer: %s", exc)
            answer = self._json(503, b'{"detail":"The mirror cannot answer right now."}')
            answer.headers["Retry-After"] = "5"
            return answer

    async def _who(self, request: web.Request, origin: str) -> Viewer:
        """A replica (the replication token), a caller upstream accepts
        (people and users shown), or anonymous; a refusal is upstream's
        answer, as for the API."""
        if replica(request, self.state.settings.server.replication_token):
            return REPLICA
        creds = credentials(request)
        upstream = self.state.upstream
        if creds is None or upstream is None:
            return ANONYMOUS
        ctx = RequestContext(request, origin, True, Choice.JSON, False, creds, self.state.clients)
        caller = await upstream.who(ctx)
        if caller.refusal is not None:
            raise _Refused(caller.refusal.status, caller.refusal.body)
        if caller is THROTTLED:
            raise FeedError(503, "Too many new credentials to check at once; retry shortly.")
        return Viewer(authenticated=caller.authenticated)

    def _json(self, status: int, body: bytes) -> web.Response:
        response = web.Response(status=status, body=body, content_type="application/json")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Vary"] = "Accept, Authorization, Cookie"
        response.headers.extend(self.state.sync.headers())
        return response

    async def _page(self, request: web.Request, asked: Asked, viewer: Viewer, origin: str) -> Page:
        """The entries after the cursor; held up to ``wait`` for some."""
        if asked.since is None:
            return changes.now(self.reader)
        after = changes.start(self.reader, asked.since)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + asked.wait
        holding = False
        async with contextlib.AsyncExitStack() as held:
            while True:
                moved = self._moved
                page = await changes.read(self.windows, asked, after, viewer, origin)
                left = deadline - loop.time()
                if page.entries or page.more or left <= 0 or self.closing:
                    return page
                if not holding:
                    await held.enter_async_context(self._slot(request))
                    holding = True
                after = page.next
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(moved.wait(), left)

    @contextlib.asynccontextmanager
    async def _slot(self, request: web.Request) -> AsyncIterator[None]:
        """One of the bounded places for what waits (503 beyond them)."""
        client = self.state.clients.address(request)
        if self.waiting >= self.most or self.by_client.get(client, 0) >= self.most_per_client:
            raise FeedError(503, "Too many streams and held requests; retry shortly.")
        self.waiting += 1
        self.by_client[client] = self.by_client.get(client, 0) + 1
        try:
            yield
        finally:
            self.waiting -= 1
            self.by_client[client] -= 1
            if not self.by_client[client]:
                del self.by_client[client]

    async def _stream(
        self, request: web.Request, asked: Asked, viewer: Viewer, origin: str
    ) -> web.StreamResponse:
        """Server-sent events, from the cursor on, until the client goes."""
        after = changes.start(self.reader, asked.since)
        asked = Asked(None, STREAM_BATCH, asked.resources, asked.projects, asked.expand, 0)
        async with self._slot(request):
            response = web.StreamResponse(
                headers={
                    "Content-Type": EVENT_STREAM,
                    "Cache-Control": "no-store",
                    "X-Accel-Buffering": "no",  # (nginx: pass each event on at once)
                }
            )
            await response.prepare(request)
            loop = asyncio.get_running_loop()
            quiet_until = loop.time() + KEEPALIVE
            sent = True
            while sent and not self.closing:
                moved = self._moved
                try:
                    page = await changes.read(
                        self.windows, asked, after, viewer, origin, STREAM_BATCH_BYTES
                    )
                except FeedError as exc:  # (the log was trimmed past it: start over)
                    event = b"event: gone\ndata: " + orjson.dumps({"detail": exc.detail})
                    await self._send(request, response, event + b"\n\n")
                    break
                if page.entries:
                    sent = await self._send(request, response, _events(page))
                    quiet_until = loop.time() + KEEPALIVE
                after = page.next
                if page.more:
                    continue
                left = quiet_until - loop.time()
                if left <= 0:
                    sent = await self._send(request, response, b": keep-alive\n\n")
                    quiet_until = loop.time() + KEEPALIVE
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(moved.wait(), left)
            return response

    async def _send(self, request: web.Request, response: web.StreamResponse, data: bytes) -> bool:
        """Write to a stream; False (and the connection dropped) when the
        client has gone or does not keep up."""
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size() + len(data) > STREAM_BUFFER:
            transport.abort()  # (it resumes from its last event's id)
            self.dropped += 1
            return False
        try:
            await asyncio.wait_for(response.write(data), WRITE_SECONDS)
        except TimeoutError:
            transport.abort()  # (it does not read what it was sent)
            self.dropped += 1
            return False
        except (OSError, RuntimeError):
            transport.abort()
            return False
        return True


def _events(page: Page) -> bytes:
    return b"".join(
        b"id: " + cursor(page.epoch, seq).encode() + b"\ndata: " + body + b"\n\n"
        for seq, body in page.entries
    )


class _Refused(FeedError):
    """Upstream refused the credentials: its answer, as the API gives it."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status, "")
        self.body = body
