"""Receiving Patchwork 4.0's webhooks: upstream pushes, the mirror follows.

Patchwork 4.0 POSTs each event to a project's webhooks, the JSON body
signed with HMAC-SHA256 under a shared secret
(``X-Patchwork-Signature: sha256=<hex>``).  With ``[sync] webhook_secret``
set, ``POST /_gateway/webhook`` checks the signature (in constant time),
refuses unsigned (401), badly signed (403), malformed (400), oversized
(413) and replayed (409) deliveries, and queues the rest for the sync
worker, which refreshes what they name at once (a full queue: 503).  The event poll remains
the safety net for deliveries that never come.

A replay is the same signed event again: deliveries are recognised by the
event id inside the signed body (the ``X-Patchwork-Delivery`` header is
not signed, so it cannot be trusted to tell deliveries apart).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import orjson
from aiohttp import web

from mirror.control import MAX_BODY, Control

SIGNATURE = "X-Patchwork-Signature"


def _answer(status: int, message: str) -> web.Response:
    return web.json_response({"detail": message}, status=status)


def verify(secret: str, body: bytes, signature: str | None) -> bool | None:
    """``None`` if unsigned, else whether ``signature`` signs ``body``."""
    if not signature:
        return None
    scheme, _, given = signature.strip().partition("=")
    if scheme.lower() != "sha256" or not given:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given.strip().lower())


#: Seconds a delivery's body may take to arrive.
BODY_SECONDS = 30.0


async def read_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body, however many pieces it arrives in (``None``: beyond
    ``limit`` bytes, or the application's own bound)."""
    try:
        async with asyncio.timeout(BODY_SECONDS):
            body = await request.read()  # (bounded by client_max_size)
    except web.HTTPRequestEntityTooLarge:
        return None
    return body if len(body) <= limit else None


def webhook_handler(secret: str, control: Control | None) -> Any:
    async def handle(request: web.Request) -> web.Response:
        if not secret or control is None:
            return _answer(404, "Not found.")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _answer(413, "Webhook body too large.")
        try:
            body = await read_body(request, MAX_BODY)
        except TimeoutError:
            return _answer(408, "The delivery's body did not arrive in time.")
        if body is None:
            return _answer(413, "Webhook body too large.")
        verdict = verify(secret, body, request.headers.get(SIGNATURE))
        if verdict is None:
            return _answer(401, f"Unsigned delivery: {SIGNATURE} is required.")
        if not verdict:
            return _answer(403, "Bad signature.")
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _answer(400, "The body is not JSON.")
        if not isinstance(event, dict) or type(event.get("id")) is not int:
            return _answer(400, "The body is not an event.")
        queued = control.enqueue_webhook(f"event:{event['id']}", body)
        if queued is None:
            response = _answer(503, "Too many deliveries waiting; the event poll will catch up.")
            response.headers["Retry-After"] = "60"
            return response
        if not queued:
            return _answer(409, "This delivery was received before.")
        return _answer(202, "Accepted.")

    return handle
