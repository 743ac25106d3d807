"""Who a caller is: credentials checked against upstream once, then cached.

Credentials are what Patchwork's own authentication reads: the
``Authorization`` header (a token, or Basic; several headers joined with
commas, as the WSGI servers in front of Django join them) and Django's
session cookie, ``sessionid`` (no other cookie identifies anyone: the
CSRF cookie and any cookie of the client's own change nothing in an
answer).  A request with credentials is answered from the mirror like an
anonymous one once upstream has accepted them.  The check is one cheap
upstream request (a page of one user, which Patchwork refuses to anyone
not authenticated); its verdict is kept for a bounded time under a keyed
hash of the credentials (never the credentials themselves), and
concurrent first requests with the same credentials share one check.
Refused credentials get upstream's own answer, body and status, for any
path, as authentication comes before any view upstream.  Credentials
upstream ignores (a made-up session, a scheme it does not read) make an
anonymous caller.

New credentials may be checked at most ``per_minute`` times a minute (in
a burst of a tenth of that), and one client (see gateway.upstream.clients) may
spend only its ``share`` of that: beyond, a 503 rather than an upstream
request, so a flood of made-up tokens can neither flood upstream nor lock
other clients' new credentials out.

An accepted verdict is kept five minutes, but one that opens what only
authenticated callers see (people, users) is checked again in the
background once it is a minute old, without holding the request: a
revoked token reads those for a minute, plus the time upstream takes to
answer the check (requests meanwhile are served); when upstream cannot
answer it, the verdict stands until its five minutes end.

Which *user* the credentials belong to matters only for what upstream
shows that user alone.  Basic credentials name the user; a token does
not, until an upstream answer says so (a user's own detail carries its
``settings``, see :meth:`Identities.learn`).  See ``needs_upstream`` in
``gateway.http.app`` for what is forwarded meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiohttp import hdrs, web
from cachetools import TLRUCache

from gateway.responses import Answer
from gateway.upstream.clients import SharedRate, client_key
from gateway.upstream.proxy import Proxy, joined_authorization
from mirror.reader import Reader
from mirror.versions import LATEST

log = logging.getLogger(__name__)

#: The check: a request only authenticated callers may make, as cheap as any.
PROBE = f"/api/{LATEST}/users/?per_page=1"
#: Seconds a verdict is kept: accepted, and refused, credentials.
ACCEPTED_SECONDS = 300.0
REFUSED_SECONDS = 60.0
#: Age beyond which an accepted verdict is checked again (in the
#: background) when it opens people or users.
RECHECK_SECONDS = 60.0
#: Checks again under way at once; beyond, they wait for a later request.
MAX_RECHECKS = 32
#: Verdicts kept (each a few hundred bytes: a hash and a small answer).
MAX_VERDICTS = 10_000
#: Refusal bodies longer than this are not kept (Patchwork's are ~40 bytes).
MAX_REFUSAL = 4096
#: Django's session cookie: the only cookie that identifies a caller.
SESSION_COOKIE = "sessionid"
#: What Patchwork answers the probe when it read no credentials at all.
_NOT_PROVIDED = b"Authentication credentials were not provided."
#: Schemes Patchwork's authentication classes read.
_SCHEMES = ("token", "basic")


@dataclass(frozen=True)
class Caller:
    #: Upstream accepts the credentials (anonymous callers: False).
    authenticated: bool
    #: The user they belong to, when known for certain.
    user_id: int | None = None
    #: Upstream's answer to these credentials, when it refuses them.
    refusal: Answer | None = None


ANONYMOUS = Caller(False)
#: No verdict: upstream could not be asked (only it can answer, then).
UNKNOWN = Caller(False)
#: No verdict: too many new credentials to check at once (a 503).
THROTTLED = Caller(False)


@dataclass(frozen=True)
class Credentials:
    """What upstream would authenticate a request by."""

    #: The ``Authorization`` value upstream reads (several headers joined).
    authorization: str | None
    #: The ``sessionid`` cookie's value.
    session: str | None

    def headers(self) -> dict[str, str]:
        """The request headers that carry them upstream."""
        headers = {}
        if self.authorization is not None:
            headers["Authorization"] = self.authorization
        if self.session is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={self.session}"
        return headers

    @property
    def readable(self) -> bool:
        """Whether upstream reads them at all (else the caller is anonymous)."""
        if self.session is not None:
            return True
        scheme = (self.authorization or "").split(" ", 1)[0].lower()
        return scheme in _SCHEMES


def session_cookie(cookie_headers: list[str]) -> str | None:
    """The ``sessionid`` cookie as Django reads it (split at ``;``, the last
    one wins), or ``None``; an empty value is no session."""
    found = None
    for header in cookie_headers:
        if SESSION_COOKIE not in header:
            continue
        for chunk in header.split(";"):
            name, sep, value = chunk.partition("=")
            if sep and name.strip() == SESSION_COOKIE:
                found = value.strip().strip('"')
    return found or None


def credentials(request: web.BaseRequest) -> Credentials | None:
    """The request's credentials, or ``None`` for an anonymous request."""
    headers = request.headers
    authorization = joined_authorization(headers) if hdrs.AUTHORIZATION in headers else None
    session = session_cookie(headers.getall(hdrs.COOKIE)) if hdrs.COOKIE in headers else None
    if authorization is None and session is None:
        return None
    return Credentials(authorization, session)


def has_credentials(request: web.BaseRequest) -> bool:
    """Whether the request carries credentials (its answer may depend on
    them): an Authorization header, or Patchwork's session cookie."""
    headers = request.headers
    if hdrs.AUTHORIZATION in headers:
        return True
    return hdrs.COOKIE in headers and session_cookie(headers.getall(hdrs.COOKIE)) is not None


@dataclass(frozen=True)
class _Verdict:
    caller: Caller
    #: When it is forgotten, and when upstream last gave it (monotonic).
    expires: float
    checked: float


class Identities:
    def __init__(
        self,
        proxy: Proxy,
        reader: Reader,
        *,
        per_minute: float = 600.0,
        share: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.proxy = proxy
        self.reader = reader
        self._key = os.urandom(32)
        self._clock = clock
        self._verdicts: TLRUCache[bytes, _Verdict] = TLRUCache(
            maxsize=MAX_VERDICTS, ttu=lambda _key, value, now: value.expires, timer=self._clock
        )
        self._pending: dict[bytes, asyncio.Future[Caller]] = {}
        self._rechecks: dict[bytes, asyncio.Task[None]] = {}
        self._new_credentials = SharedRate(per_minute, share, clock)
        #: Upstream checks made (for tests and the status).
        self.checks = 0

    def _hash(self, creds: Credentials) -> bytes:
        text = f"{creds.authorization}\x00{creds.session}"
        return hmac.new(self._key, text.encode("utf-8", "surrogateescape"), "sha256").digest()

    async def who(self, creds: Credentials, client: str = "", sensitive: bool = False) -> Caller:
        """The caller ``creds`` stand for; ``client`` asks (its share of new
        checks); ``sensitive``: the answer shows what only authenticated
        callers see, so an old acceptance is checked again (in the background).

        ``UNKNOWN`` when upstream could not be asked: the caller then
        forwards the request (or, ``busy``, refuses it).
        """
        if not creds.readable:
            return ANONYMOUS  # Patchwork reads no other scheme: the caller is anonymous
        key = self._hash(creds)
        known = self._verdicts.get(key)
        if known is not None:
            if sensitive and known.caller.authenticated:
                self._recheck_when_old(key, creds, known)
            return known.caller
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        if not self._new_credentials.take(client_key(client)):
            return THROTTLED
        future: asyncio.Future[Caller] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            caller = await self._check(creds)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: whoever waits gets it too
            raise
        finally:
            del self._pending[key]
        self._keep(key, caller)
        future.set_result(caller)
        return caller

    def _keep(self, key: bytes, caller: Caller) -> None:
        if caller is UNKNOWN:
            return
        now = self._clock()
        seconds = ACCEPTED_SECONDS if caller.authenticated else REFUSED_SECONDS
        self._verdicts[key] = _Verdict(caller, now + seconds, now)

    def _recheck_when_old(self, key: bytes, creds: Credentials, known: _Verdict) -> None:
        if self._clock() - known.checked < RECHECK_SECONDS or key in self._rechecks:
            return
        if len(self._rechecks) >= MAX_RECHECKS:
            return  # a later request will
        task = asyncio.create_task(self._recheck(key, creds, known))
        self._rechecks[key] = task
        task.add_done_callback(lambda _task: self._rechecks.pop(key, None))

    async def _recheck(self, key: bytes, creds: Credentials, known: _Verdict) -> None:
        with contextlib.suppress(Exception):  # (upstream trouble: the verdict stands)
            caller = await self._check(creds)
            current = self._verdicts.get(key)
            if current is None or current.caller is not known.caller:
                return  # forgotten, or learnt more, meanwhile: that stands
            if caller is UNKNOWN:
                # Upstream could not say: ask again after another while (the
                # verdict still ends when it was to).
                self._verdicts[key] = _Verdict(known.caller, known.expires, self._clock())
            elif caller.authenticated:
                kept = Caller(True, known.caller.user_id or caller.user_id)
                now = self._clock()
                self._verdicts[key] = _Verdict(kept, now + ACCEPTED_SECONDS, now)
            else:
                log.info("credentials accepted before are refused now; forgotten")
                self._keep(key, caller)

    async def close(self) -> None:
        """Stop the checks under way in the background."""
        tasks = list(self._rechecks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _check(self, creds: Credentials) -> Caller:
        self.checks += 1
        answer = await self.proxy.send("GET", PROBE, creds.headers(), kind="identity")
        if answer is self.proxy.busy or answer.status >= 500:
            return UNKNOWN
        if answer.status == 200:
            return Caller(True, self._basic_user(creds.authorization))
        if answer.status in (401, 403) and len(answer.body) <= MAX_REFUSAL:
            if _NOT_PROVIDED in answer.body:
                return ANONYMOUS  # upstream read nothing it knows: a made-up session
            kept = tuple(
                (k, v) for k, v in answer.headers if k in ("Content-Type", "WWW-Authenticate")
            )
            return Caller(False, None, Answer(answer.status, answer.body, kept))
        return UNKNOWN

    def _basic_user(self, header: str | None) -> int | None:
        """The user Basic credentials name, if the mirror knows them."""
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic" or "," in value:
            return None
        try:
            username = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return self.reader.user_named(username)

    def learn(self, creds: Credentials, body: bytes) -> None:
        """Learn whose a token is from upstream's answer to ``users/<id>/``.

        Patchwork shows a user's ``settings`` to that user alone (1.2+).
        """
        key = self._hash(creds)
        known = self._verdicts.get(key)
        if known is None or known.caller.user_id is not None or not known.caller.authenticated:
            return
        try:
            user = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if isinstance(user, dict) and "settings" in user and type(user.get("id")) is int:
            self._verdicts[key] = _Verdict(Caller(True, user["id"]), known.expires, known.checked)

    def forget(self, creds: Credentials) -> None:
        """Drop a verdict: upstream refused credentials it had accepted
        (revoked since), so the next request checks them again."""
        self._verdicts.pop(self._hash(creds), None)
