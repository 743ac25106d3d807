"""Webhook deliveries are verified against their whole body, however it
arrives over the network."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket

import pytest

from cli.config import parse
from gateway.http.app import create_app
from mirror.control import Control
from mirror.reader import Reader
from tests.support import copy_mirror

SECRET = "webhook-secret"


@pytest.fixture
async def hooked(deployment, tmp_path, aiohttp_server):
    """A real server (TCP on loopback) with a webhook secret set."""
    mirror = copy_mirror(deployment.storage, tmp_path / "mirror.sqlite3")
    config = parse(
        {
            "upstream": {"url": deployment.upstream},
            "storage": {"path": str(mirror)},
            "sync": {"webhook_secret": SECRET},
        }
    )
    reader = Reader(mirror)
    await reader.open(0.05)
    control = Control(mirror)
    server = await aiohttp_server(create_app(config.gateway, reader, control=control))
    server.control = control
    yield server
    await reader.close()
    control.close()


def _delivery(event_id: int) -> tuple[bytes, str]:
    payload = {"id": event_id, "category": "patch-created", "payload": {"x": "y" * 3000}}
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, signature


async def _post_in_pieces(port: int, head: bytes, pieces: list[bytes]) -> int:
    """Send a request's head, then its body piece by piece with pauses
    (each piece its own TCP segment); the answer's status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    for piece in pieces:
        await asyncio.sleep(0.05)
        writer.write(piece)
        await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


def _head(signature: str, extra: str) -> bytes:
    return (
        "POST /_gateway/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nX-Patchwork-Signature: {signature}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    ).encode()


async def test_a_body_in_several_pieces_with_a_length_is_verified_whole(hooked):
    body, signature = _delivery(700_001)
    pieces = [body[:100], body[100:2000], body[2000:]]
    head = _head(signature, f"Content-Length: {len(body)}\r\n")
    assert await _post_in_pieces(hooked.port, head, pieces) == 202


async def test_a_chunked_body_in_several_pieces_is_verified_whole(hooked):
    body, signature = _delivery(700_002)
    chunks = [body[:10], body[10:1500], body[1500:]]
    pieces = [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks] + [b"0\r\n\r\n"]
    head = _head(signature, "Transfer-Encoding: chunked\r\n")
    assert await _post_in_pieces(hooked.port, head, pieces) == 202


async def test_a_body_beyond_the_bound_is_refused_however_it_comes(hooked):
    """2 MiB in one chunk: a 413, read even when the server answers and
    closes before the body is all sent (the rest is then reset)."""
    _, signature = _delivery(700_003)
    big = b"x" * (2 << 20)
    head = _head(signature, "Transfer-Encoding: chunked\r\n")
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", hooked.port))
        try:
            for piece in (head, b"%x\r\n" % len(big), big, b"\r\n0\r\n\r\n"):
                await loop.sock_sendall(sock, piece)
        except ConnectionError:
            pass  # answered already: what was answered is still there to read
        answer = b""
        while b"\r\n" not in answer:
            received = await loop.sock_recv(sock, 4096)
            if not received:
                break
            answer += received
    assert answer.split(b" ", 2)[:2] == [b"HTTP/1.1", b"413"], answer
