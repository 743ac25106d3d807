"""A polite HTTP client for the upstream Patchwork.

Bounded concurrency, a time-out on every request, retries with exponential
backoff on 5xx answers, time-outs and connection errors, and on 429 a wait
of exactly what ``Retry-After`` asks.  Responses are size-bounded.  The
sync token is sent on every request and never logged.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

log = logging.getLogger(__name__)

USER_AGENT = "patchwork-gateway-sync/0.1"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Source(Protocol):
    """Where the crawler reads from: a real upstream or recorded fixtures."""

    async def get(self, path: str) -> Response: ...

    async def close(self) -> None: ...


class UpstreamError(Exception):
    """The upstream could not give a usable answer, even after retries."""

    #: Why, in a few words ("connection refused", "HTTP 503"), when upstream
    #: could not be reached or failed; ``None`` for other problems.
    reason: str | None = None
    #: Whether no answer came at all (else it answered with an error).
    unreachable = False


class _Retryable(UpstreamError):
    def __init__(
        self, reason: str, retry_after: float | None = None, *, unreachable: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.unreachable = unreachable


def describe_failure(base_url: str, exc: BaseException) -> str | None:
    """Upstream's failure in the words a person needs (where and why), or
    ``None`` if ``exc`` is not one."""
    if not isinstance(exc, UpstreamError) or exc.reason is None:
        return None
    if exc.unreachable:
        return f"cannot reach upstream {base_url} ({exc.reason})"
    return f"upstream {base_url} answers {exc.reason}"


def _why(exc: BaseException) -> str:
    """A failed connection in a few words, for logs and status."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "host name not found"
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        return os.strerror(errno).lower() if errno else type(exc).__name__
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection closed without an answer"
    return type(exc).__name__


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or a date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Upstream:
    """The configured upstream Patchwork, reached over HTTP."""

    def __init__(
        self,
        base_url: str,
        token: str = "",
        *,
        concurrency: int = 4,
        timeout: float = 60.0,
        attempts: int = 6,
        max_backoff: float = 60.0,
        max_retry_after: float = 600.0,
        max_bytes: int = 64 * 1024 * 1024,
        say_retries: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        #: Log why a request is retried (once while the reason stays the
        #: same), where nobody else will until it gives up (``sync --once``).
        self.say_retries = say_retries
        self._said: str | None = None
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Token {token}"
        self._limit = asyncio.Semaphore(concurrency)
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 15.0))
        self._attempts = attempts
        self._backoff = wait_random_exponential(multiplier=0.5, max=max_backoff)
        self._max_retry_after = max_retry_after
        self._max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=32),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, self._max_retry_after)
        return self._backoff(state)

    def _retrying(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        what = describe_failure(self.base_url, exc) if exc else None
        if not self.say_retries or what is None or what == self._said:
            return
        self._said = what
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s; retrying in %.1f s", what, wait)

    async def get(self, path: str) -> Response:
        """GET ``path`` (relative to the base URL), retrying transient failures.

        4xx answers other than 429 are returned, not raised: a 404 or 403 is
        an answer the crawler must see.
        """
        url = self.base_url + path
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            before_sleep=self._retrying,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._get_once(url, path)
                    self._said = None
                    return response
        except _Retryable as exc:
            failed = UpstreamError(f"GET {path}: {exc}")
            failed.reason, failed.unreachable = exc.reason, exc.unreachable
            raise failed from None
        raise AssertionError("unreachable")

    async def _get_once(self, url: str, path: str) -> Response:
        session = await self._client()
        async with self._limit:
            self.requests += 1
            try:
                async with session.get(url, allow_redirects=False) as resp:
                    body = await self._read(resp, path)
                    headers = {k: v for k, v in resp.headers.items()}
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                # (Whoever gives up reports it: once, not every attempt.)
                log.debug("GET %s failed: %s; will retry", path, _why(exc))
                raise _Retryable(_why(exc), unreachable=True) from None
        if status == 429 or status >= 500:
            retry_after = _retry_after(headers.get("Retry-After"))
            log.debug("GET %s answered %d; will retry", path, status)
            raise _Retryable(f"HTTP {status}", retry_after)
        return Response(status, headers, body)

    async def _read(self, resp: aiohttp.ClientResponse, path: str) -> bytes:
        declared = resp.content_length
        if declared is not None and declared > self._max_bytes:
            raise UpstreamError(f"GET {path}: response of {declared} bytes is too large")
        chunks = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > self._max_bytes:
                raise UpstreamError(f"GET {path}: response larger than {self._max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
