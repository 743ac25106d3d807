"""Who a caller is: credentials checked against upstream once, then cached.

A request with a token or Basic credentials is answered from the mirror
like an anonymous one once upstream has accepted those credentials.  The
check is one cheap upstream request (a page of one user, which Patchwork
refuses to anyone not authenticated); its verdict is kept for a bounded
time under a keyed hash of the ``Authorization`` header (never the
header itself), and concurrent first requests with the same credentials
share one check.  Refused credentials get upstream's own answer, body and
status, for any path, as authentication comes before any view upstream.

New credentials may be checked at most ``per_minute`` times a minute (in
a burst of a tenth of that): beyond, a 503 rather than an upstream
request, so a flood of made-up tokens cannot flood upstream.

Which *user* the credentials belong to matters only for what upstream
shows that user alone.  Basic credentials name the user; a token does
not, until an upstream answer says so (a user's own detail carries its
``settings``, see :meth:`Identities.learn`).  See ``needs_upstream`` in
``gateway.app`` for what is forwarded meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiohttp import web
from cachetools import TLRUCache

from gateway.proxy import Proxy
from gateway.reader import Reader
from gateway.responses import Answer
from mirror.versions import LATEST

#: The check: a request only authenticated callers may make, as cheap as any.
PROBE = f"/api/{LATEST}/users/?per_page=1"
#: Seconds a verdict is kept: accepted, and refused, credentials.
ACCEPTED_SECONDS = 300.0
REFUSED_SECONDS = 60.0
#: Verdicts kept (each a few hundred bytes: a hash and a small answer).
MAX_VERDICTS = 10_000
#: Refusal bodies longer than this are not kept (Patchwork's are ~40 bytes).
MAX_REFUSAL = 4096


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


def credentials(request_headers: object) -> str | None:
    """The one ``Authorization`` header upstream would read, or ``None``."""
    getall = getattr(request_headers, "getall", None)
    values = getall("Authorization", []) if getall else []
    return values[0] if len(values) == 1 else None


def has_credentials(request: web.BaseRequest) -> bool:
    """Whether the request carries credentials (its answer may depend on
    them): an Authorization header, or Patchwork's session cookie."""
    headers = request.headers
    return "Authorization" in headers or ("Cookie" in headers and "sessionid" in request.cookies)


class Identities:
    def __init__(
        self,
        proxy: Proxy,
        reader: Reader,
        *,
        per_minute: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.proxy = proxy
        self.reader = reader
        self._key = os.urandom(32)
        self._clock = clock
        self._verdicts: TLRUCache[bytes, tuple[Caller, float]] = TLRUCache(
            maxsize=MAX_VERDICTS, ttu=lambda _key, value, now: value[1], timer=self._clock
        )
        self._pending: dict[bytes, asyncio.Future[Caller]] = {}
        self._rate = per_minute / 60.0
        self._burst = max(1.0, per_minute / 10.0)
        self._tokens = self._burst
        self._refilled = self._clock()
        #: Upstream checks made (for tests and the status).
        self.checks = 0

    def _hash(self, header: str) -> bytes:
        return hmac.new(self._key, header.encode("utf-8", "surrogateescape"), "sha256").digest()

    def _may_check(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    async def who(self, header: str) -> Caller:
        """The caller ``header`` (an ``Authorization`` value) stands for.

        ``UNKNOWN`` when upstream could not be asked: the caller then
        forwards the request (or, ``busy``, refuses it).
        """
        scheme = header.split(" ", 1)[0].lower()
        if scheme not in ("token", "basic"):
            return ANONYMOUS  # Patchwork reads no other scheme: the caller is anonymous
        key = self._hash(header)
        known = self._verdicts.get(key)
        if known is not None:
            return known[0]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        if not self._may_check():
            return THROTTLED
        future: asyncio.Future[Caller] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            caller = await self._check(header)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: whoever waits gets it too
            raise
        finally:
            del self._pending[key]
        if caller is not UNKNOWN:
            seconds = REFUSED_SECONDS if caller.refusal else ACCEPTED_SECONDS
            self._verdicts[key] = (caller, self._clock() + seconds)
        future.set_result(caller)
        return caller

    async def _check(self, header: str) -> Caller:
        self.checks += 1
        answer = await self.proxy.send("GET", PROBE, {"Authorization": header}, kind="identity")
        if answer is self.proxy.busy or answer.status >= 500:
            return UNKNOWN
        if answer.status == 200:
            return Caller(True, self._basic_user(header))
        if answer.status in (401, 403) and len(answer.body) <= MAX_REFUSAL:
            kept = tuple(
                (k, v) for k, v in answer.headers if k in ("Content-Type", "WWW-Authenticate")
            )
            return Caller(False, None, Answer(answer.status, answer.body, kept))
        return UNKNOWN

    def _basic_user(self, header: str) -> int | None:
        """The user Basic credentials name, if the mirror knows them."""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            username = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return self.reader.user_named(username)

    def learn(self, header: str, body: bytes) -> None:
        """Learn whose a token is from upstream's answer to ``users/<id>/``.

        Patchwork shows a user's ``settings`` to that user alone (1.2+).
        """
        key = self._hash(header)
        known = self._verdicts.get(key)
        if known is None or known[0].user_id is not None or not known[0].authenticated:
            return
        try:
            user = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if isinstance(user, dict) and "settings" in user and type(user.get("id")) is int:
            self._verdicts[key] = (Caller(True, user["id"]), known[1])

    def forget(self, header: str) -> None:
        """Drop a verdict: upstream refused credentials it had accepted
        (revoked since), so the next request checks them again."""
        self._verdicts.pop(self._hash(header), None)
