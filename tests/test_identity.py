"""Identified reads from the mirror: credentials checked once, answers kept
apart by identity, private data only to its owner."""

from __future__ import annotations

import asyncio
import time

import pytest

from cli.config import parse
from gateway.http.app import STATE, create_app
from gateway.upstream.identity import PROBE
from mirror.reader import Reader
from tests.mirroring import fake_upstream, serve, worker
from tests.support import auth_header, replay_upstream


@pytest.fixture
async def live(make_gateway):
    """An in-process gateway on a copy of the mirror, the replay as upstream;
    ``live.seen[0]``: the requests upstream received."""
    seen: list[int] = [0]
    with replay_upstream(seen) as upstream:
        client = await make_gateway(upstream.url)
        client.seen = seen
        yield client


async def _get(client, path: str, who: str | None = None):
    resp = await client.get(path, headers=auth_header(who))
    return resp.status, resp.headers.get("X-Patchwork-Gateway"), await resp.read()


async def test_credentials_are_checked_once_even_when_asked_at_once(live):
    before = live.seen[0]
    answers = await asyncio.gather(
        *(_get(live, f"/api/1.4/patches/?per_page=2&n={i}", "stephen") for i in range(20))
    )
    assert {(status, source) for status, source, _ in answers} == {(200, "mirror")}
    assert live.seen[0] - before == 1  # the one check
    assert live.app[STATE].upstream.identities.checks == 1
    # Later reads by the same caller ask upstream nothing...
    await _get(live, "/api/1.4/people/?per_page=3", "stephen")
    await _get(live, "/api/1.1/users/1/", "stephen")
    assert live.seen[0] - before == 1
    # ... but a user's detail from 1.2: it may be the caller's own, with its
    # settings, and a token does not say whose it is.
    assert (await _get(live, "/api/1.4/users/1/", "stephen"))[1] == "upstream"


async def test_refused_credentials_get_upstreams_answer_on_every_path(live):
    for path in ("/api/1.0/projects/", "/api/1.4/patches/1/", "/api/events/"):
        status, _, body = await _get(live, path, "badtoken")
        assert (status, body) == (403, b'{"detail":"Invalid token."}')
    status, _, body = await _get(live, "/api/1.4/patches/", "basicbad:stephen")
    assert (status, body) == (403, b'{"detail":"Invalid username/password."}')
    assert live.app[STATE].upstream.identities.checks == 2


async def test_a_flood_of_made_up_tokens_makes_a_bounded_number_of_checks(live):
    identities = live.app[STATE].upstream.identities
    before = live.seen[0]
    started = time.monotonic()
    statuses = []
    for i in range(300):
        header = {"Authorization": f"Token made-up-{i:036d}"}
        resp = await live.get("/api/1.4/projects/", headers=header)
        statuses.append(resp.status)
        await resp.read()
    # A burst of 60 checks (a tenth of the 600 a minute), then ten a second.
    allowed = 60 + 10 * (time.monotonic() - started) + 1
    assert identities.checks <= allowed
    assert live.seen[0] - before <= allowed
    assert statuses.count(503) >= 230
    assert set(statuses) <= {403, 503}


async def test_answers_are_kept_apart_by_identity(live):
    # People: refused to anonymous callers, listed for authenticated ones,
    # whatever was asked (and cached) before.
    assert (await _get(live, "/api/1.4/people/?per_page=2"))[0] == 403
    status, source, _ = await _get(live, "/api/1.4/people/?per_page=2", "contrib")
    assert (status, source) == (200, "mirror")
    assert (await _get(live, "/api/1.4/people/?per_page=2"))[0] == 403
    assert (await _get(live, "/api/1.4/people/?per_page=2", "badtoken"))[0] == 403


async def test_private_bundles_only_to_their_owner(live):
    anonymous = (await live.get("/api/1.4/bundles/?per_page=250")).headers
    listed = await (await live.get("/api/1.4/bundles/?per_page=250")).json()
    assert all(b["public"] for b in listed)
    assert 'rel="next"' not in anonymous.get("Link", "")
    # An identified caller's bundles come from upstream, which knows its own.
    status, source, _ = await _get(live, "/api/1.4/bundles/", "stephen")
    assert (status, source) == (200, "upstream")
    # And that answer is not cached for anyone else.
    listed_again = await (await live.get("/api/1.4/bundles/")).json()
    assert all(b["public"] for b in listed_again)


async def test_a_users_own_detail_comes_from_upstream_with_its_settings(live):
    # Basic credentials name the user: its own detail is upstream's (with
    # settings), anyone else's the mirror's.
    status, source, _ = await _get(live, "/api/1.4/users/2/", "basic:stephen")
    assert (status, source) == (200, "upstream")
    status, source, _ = await _get(live, "/api/1.4/users/1/", "basic:stephen")
    assert (status, source) == (200, "mirror")


async def test_the_check_is_a_cheap_authenticated_read():
    assert PROBE.startswith("/api/1.4/users/?per_page=1")


async def test_lists_the_sync_identity_may_not_see_come_from_upstream(tmp_path, aiohttp_client):
    """Synced anonymously, the mirror has no people or users to show: an
    identified caller's reads of them go upstream."""
    fake = fake_upstream()
    mirror = tmp_path / "anonymous.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url, token="") as sync:
            await sync.once()
        config = parse({"upstream": {"url": url}, "storage": {"path": str(mirror)}})
        reader = Reader(mirror)
        await reader.open(0.05)
        try:
            client = await aiohttp_client(create_app(config.gateway, reader))
            status, source, _ = await _get(client, "/api/1.4/people/", "stephen")
            assert (status, source) == (200, "upstream")
            status, source, _ = await _get(client, "/api/1.4/patches/?per_page=1", "stephen")
            assert (status, source) == (200, "mirror")
            assert (await _get(client, "/api/1.4/people/"))[0] == 403  # anonymous
        finally:
            await reader.close()
