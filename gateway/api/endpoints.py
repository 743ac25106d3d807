"""Serving the read API from the mirror: one generic path for every resource.

Given a resolved route, the request's query parameters and its origin,
build the answer exactly as Patchwork would: permission refusals, parent
checks, filters, pagination with its ``Link`` header, rendering.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping

from gateway.api import browsable, pagination
from gateway.api.render import STATEFUL, Context, Embeds, effective_version, embedded_refs, renderer
from gateway.api.routing import ApiRoute
from gateway.responses import (
    Answer,
    detail,
    escape_uri_path,
    json_answer,
    json_body,
    json_bytes_answer,
    retry_later,
)
from mirror import query
from mirror.dependencies import Dep
from mirror.model import Resource
from mirror.reader import QueryTooSlow, Reader, ReaderBusy
from mirror.resources import INDEX, RESOURCES

log = logging.getLogger(__name__)

NOT_AUTHENTICATED = "Authentication credentials were not provided."


def allowed(route: ApiRoute) -> str:
    """The ``Allow`` header of the view serving ``route``."""
    if route.resource is None:
        return "GET, HEAD, OPTIONS"
    return route.resource.allow_list if route.kind == "list" else route.resource.allow_detail


async def from_mirror(
    route: ApiRoute,
    request: web.Request,
    origin: str,
    reader: Reader,
    authenticated: bool,
    page: bool,
) -> Answer:
    """The API's answer to ``request`` from the mirror, whatever happens:
    a query too slow, too many waiting, a mirror that cannot be read give
    a clean 503 to retry (and one log line); ``page``: the browsable API's
    page of the answer (gateway.api.browsable)."""
    path, raw_query = request.path, request.rel_url.raw_query_string
    try:
        answer = await serve(route, request.query, raw_query, path, origin, reader, authenticated)
    except QueryTooSlow:
        answer = detail(503, "This query takes too long; narrow it down.", allowed(route))
    except ReaderBusy:
        answer = retry_later("Too many slow queries are waiting; retry in a few seconds.")
    except sqlite3.Error as exc:  # locked, damaged or vanished
        log.warning("%s %s: the mirror cannot answer: %s", request.method, path, exc)
        answer = retry_later("The mirror cannot answer right now; retry in a few seconds.")
    if page:
        res = route.resource
        title = "Api Root" if res is None else f"{res.model} {route.kind.title()}"
        answer = browsable.page(answer, request.method, request.rel_url.raw_path_qs, title)
    return answer


def _no_match(model: str) -> str:
    return f"No {model} matches the given query."


async def serve(
    route: ApiRoute,
    params: MultiMapping[str],
    raw_query: str,
    path: str,
    origin: str,
    reader: Reader,
    authenticated: bool = False,
) -> Answer:
    """The answer to a read of ``route``; ``authenticated``: the caller's
    credentials were accepted upstream (people and users become visible)."""
    formats = params.getall("format", [])
    suffix = "?" + urlencode({"format": formats[-1]}) if formats else ""
    ctx = Context(origin, route.version, effective_version(route.version), suffix)
    if route.kind == "index":
        data = {name: f"{ctx.api}{RESOURCES[name].path}/{suffix}" for name in INDEX}
        return json_answer(200, data, "GET, HEAD, OPTIONS")
    res = route.resource
    assert res is not None
    if route.kind == "list":
        return await _list(res, route, params, raw_query, path, ctx, reader, authenticated)
    return await _detail(res, route, params, ctx, reader, authenticated)


def _refusal(
    res: Resource,
    route: ApiRoute,
    params: MultiMapping[str],
    reader: Reader,
    allow: str,
    authenticated: bool,
) -> Answer | None:
    """Patchwork's answers before any lookup: no permission, no parent, bad ``q``."""
    if res.requires_auth and not authenticated:
        return detail(403, NOT_AUTHENTICATED, allow)
    if res.parent is not None and route.parent_id is not None:
        parent = RESOURCES[res.parent.resource]
        if not reader.exists(parent.table, route.parent_id):
            return detail(404, _no_match(parent.model), allow)
    # DRF's search filter validates the (last) ``q`` of every list and
    # detail view, searchable or not.
    searched = params.getall("q", [])
    if searched and "\x00" in searched[-1]:
        return json_answer(400, ["Null characters are not allowed."], allow)
    return None


async def _list(
    res: Resource,
    route: ApiRoute,
    params: MultiMapping[str],
    raw_query: str,
    path: str,
    ctx: Context,
    reader: Reader,
    authenticated: bool,
) -> Answer:
    allow = res.allow_list
    refusal = _refusal(res, route, params, reader, allow, authenticated)
    if refusal:
        return refusal

    try:
        q = await query.build(
            res, ctx.effective, params, reader.fetch_kept, parent_id=route.parent_id
        )
        count = await reader.count(res.table, q)
    except query.EmptyResult:
        q, count = None, 0
    try:
        page = pagination.paginate(params, count)
    except pagination.InvalidPage:
        return detail(404, "Invalid page.", allow)

    ids: list[int] = []
    window = None
    if q is not None and page.limit > 0:
        query.order(res, q, page.limit)
        ids = await reader.page_ids(res.table, q, page.offset, page.limit, count)
        window = reader.window(res.table, q, ids, page.per_page, count)
    items = await _render_list(res, ids, ctx, reader)
    link = pagination.link_header(ctx.origin + escape_uri_path(path), raw_query, page)
    return json_bytes_answer(200, b"[" + b",".join(items) + b"]", allow, link, window)


async def _render_list(res: Resource, ids: list[int], ctx: Context, reader: Reader) -> list[bytes]:
    """The JSON of the objects ``ids`` as list items, reusing earlier renderings.

    A rendering depends on the object, the version and the origin; bots
    polling with ever-changing ``since`` values miss the response cache
    but keep hitting this one, which keeps each item's encoded JSON.
    (Series are rendered afresh: their fields depend on the items before
    them, see render.UrlList.)
    """
    generation = reader.generation
    base = (res.name, ctx.effective, ctx.api, ctx.origin, ctx.suffix)
    reuse = res.name not in STATEFUL
    done: dict[int, bytes] = {}
    missing = []
    for obj_id in ids:
        cached = reader.item((base, obj_id)) if reuse else None
        if cached is None:
            missing.append(obj_id)
        else:
            done[obj_id] = cached
    if missing:
        docs = reader.docs((res.table, obj_id) for obj_id in missing)
        refs = {ref: embedded_refs(res.name, doc) for ref, doc in docs.items()}
        found = reader.docs((ref for each in refs.values() for ref in each), embedded=True)
        embeds = Embeds(found)
        render = renderer(res.name, ctx.effective, False)
        for obj_id in missing:
            doc = docs.get((res.table, obj_id))
            if doc is not None and obj_id not in done:
                done[obj_id] = json_body(render(doc, embeds, ctx))
                if reuse:
                    # (An item shows its object, what it embeds, and the
                    # absence of what it refers to but the mirror lacks.)
                    deps: set[Dep] = {("ref", res.table, obj_id)}
                    for ref in refs[(res.table, obj_id)]:
                        deps.add(("embed", ref[0]) if ref in found else ("ref", *ref))
                    reader.keep_item((base, obj_id), done[obj_id], generation, deps)
    return [done[obj_id] for obj_id in ids if obj_id in done]


async def _detail(
    res: Resource,
    route: ApiRoute,
    params: MultiMapping[str],
    ctx: Context,
    reader: Reader,
    authenticated: bool,
) -> Answer:
    allow = res.allow_detail
    refusal = _refusal(res, route, params, reader, allow, authenticated)
    if refusal:
        return refusal

    try:
        q = await query.build(
            res, ctx.effective, params, reader.fetch_kept, parent_id=route.parent_id, for_list=False
        )
    except query.EmptyResult:
        return detail(404, _no_match(res.model), allow)

    key = route.key or ""
    doc = None
    try:
        obj_id: int | None = int(key)
    except ValueError:
        obj_id = None
    if obj_id is not None and -(2**63) <= obj_id < 2**63:
        doc = reader.one(res.table, _narrowed(q, "t.id = ?", obj_id), ("ref", res.table, obj_id))
    if doc is None and res.lookup == "project":
        # (By link name: any project's change may make one answer it.)
        by_name = ("scope", res.table, "*")
        doc = reader.one(res.table, _narrowed(q, "t.linkname = ?", key), by_name)
    if doc is None:
        return detail(404, _no_match(res.model), allow)

    embeds = Embeds(reader.docs(embedded_refs(res.name, doc), embedded=True))
    data = renderer(res.name, ctx.effective, True)(doc, embeds, ctx)
    return json_answer(200, data, allow)


def representation(res: Resource, obj_id: int, origin: str, reader: Reader) -> Any:
    """An object as the unversioned API shows it: its detail (the list's
    item where it has none, as events); None if the mirror lacks it."""
    ctx = Context(origin, None, effective_version(None))
    detailed = res.detail_since is not None
    doc = reader.full(res.table, obj_id) if detailed else None
    if not detailed:
        doc = reader.docs([(res.table, obj_id)]).get((res.table, obj_id))
    if doc is None:
        return None
    embeds = Embeds(reader.docs(embedded_refs(res.name, doc), embedded=True))
    return renderer(res.name, ctx.effective, detailed)(doc, embeds, ctx)


def _narrowed(q: query.Query, condition: str, value: object) -> query.Query:
    return query.Query(where=[*q.where, condition], args=[*q.args, value])
