"""An OpenAPI 3.1 description of the API the gateway serves, and its page.

Generated from the same descriptions the gateway serves from
(``mirror/resources.py`` for fields, filters, searches, orderings and
permissions; ``gateway/routing.py`` for which endpoint exists in which
version), so it cannot drift from what is served.  Served as JSON at
``/api/docs/openapi.json`` and as a readable page at ``/api/docs/``,
both built here, with no asset from elsewhere, so they work offline.
"""

from __future__ import annotations

import html
from functools import cache
from typing import Any

import orjson
from aiohttp import web

from gateway.api.routing import API
from gateway.feed.changes import MAX_LIMIT, MAX_WAIT
from gateway.responses import HTML_SAFETY
from mirror.model import (
    BoolFilter,
    ChoiceFilter,
    DateFilter,
    Embed,
    EmbedList,
    Field,
    ListLink,
    Payload,
    RefFilter,
    Resource,
    SelfUrl,
    SiteUrl,
    UrlList,
)
from mirror.resources import RESOURCES
from mirror.versions import LATEST, VERSIONS, has_version

_DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}


def _field_schema(field: Field) -> dict[str, Any]:
    if isinstance(field, SelfUrl | ListLink | SiteUrl):
        return {"type": ["string", "null"]}
    if isinstance(field, Embed):
        return {"type": ["object", "null"]}
    if isinstance(field, EmbedList):
        return {"type": "array", "items": {"type": "object"}}
    if isinstance(field, UrlList):
        return {"type": "array", "items": {"type": "string"}}
    if isinstance(field, Payload):
        return {"type": "object"}
    return {}  # a value as upstream stored it: string, number, boolean or null


def _object_schema(res: Resource, effective: str, detail: bool) -> dict[str, Any]:
    fields = [*res.fields, *(res.detail_fields if detail else ())]
    shown = [f for f in fields if has_version(effective, f.since)]
    return {
        "type": "object",
        "properties": {f.name: _field_schema(f) for f in shown},
        "required": [f.name for f in shown if not (isinstance(f, UrlList) and f.project_flag)],
    }


def _filter_parameter(flt: Any) -> dict[str, Any]:
    schema: dict[str, Any]
    if isinstance(flt, RefFilter):
        one = {"type": "string", "description": "an id" + (" or a name" if flt.alt_column else "")}
        schema = {"type": "array", "items": one} if flt.multiple else one
    elif isinstance(flt, BoolFilter):
        schema = {"type": "string", "description": "true, false, 1 or 0 (any case)"}
    elif isinstance(flt, ChoiceFilter):
        schema = {"type": "string", "enum": sorted(flt.choices)}
    elif isinstance(flt, DateFilter):
        schema = {"type": "string", "description": "an ISO 8601 date and time"}
    else:
        schema = {"type": "string"}
    parameter: dict[str, Any] = {"name": flt.param, "in": "query", "schema": schema}
    if schema.get("type") == "array":
        parameter.update(style="form", explode=True)
    return parameter


def _list_parameters(res: Resource, effective: str) -> list[dict[str, Any]]:
    parameters: dict[str, dict[str, Any]] = {}
    for flt in res.filters:
        if has_version(effective, flt.since) and flt.param not in parameters:
            parameters[flt.param] = _filter_parameter(flt)
    if res.search:
        parameters["q"] = {
            "name": "q",
            "in": "query",
            # (A null character is refused with a 400, as upstream does.)
            "schema": {"type": "string", "pattern": "^[^\\u0000]*$"},
            "description": f"words, each in one of: {', '.join(res.search)}",
        }
    terms = sorted(res.orderings)
    parameters["order"] = {
        "name": "order",
        "in": "query",
        "schema": {"type": "string"},
        "description": "comma-separated fields, '-' for descending: " + ", ".join(terms),
    }
    for name in ("page", "per_page"):
        parameters[name] = {
            "name": name,
            "in": "query",
            "schema": {"type": "integer", "minimum": 1},
        }
    return list(parameters.values())


def _operation(
    version: str | None, res: Resource, kind: str, path_params: tuple[str, ...]
) -> dict[str, Any]:
    effective = version or LATEST
    item = _object_schema(res, effective, kind == "detail")
    body = {"type": "array", "items": item} if kind == "list" else item
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": "^[^/]+$"}
            if name == "id" and res.lookup == "project"
            else {"type": "integer", "minimum": 0},
        }
        for name in path_params
    ]
    if kind == "list":
        parameters += _list_parameters(res, effective)
    what = f"The {res.model.lower()}" + (" list, paginated" if kind == "list" else "")
    responses: dict[str, Any] = {
        "200": {
            "description": what,
            "content": {"application/json": {"schema": body}},
        },
        "404": {
            "description": "No such object (or page); a path matching no endpoint gets "
            "the site's HTML page",
            "content": {"application/json": {"schema": _DETAIL}, "text/html": {}},
        },
    }
    if kind == "list":
        responses["400"] = {
            "description": "A search (q) with a null character",
            "content": {"application/json": {"schema": {"type": "array"}}},
        }
        responses["200"]["headers"] = {
            "Link": {"schema": {"type": "string"}, "description": "RFC 8288 pagination"}
        }
    if res.requires_auth:
        responses["403"] = {
            "description": "Credentials are needed",
            "content": {"application/json": {"schema": _DETAIL}},
        }
    return {
        "operationId": f"{version or 'latest'}-{res.name}-{kind}",
        "summary": f"{res.model} {kind}",
        "tags": [res.path if res.parent is None else res.name.replace("_", " ")],
        "parameters": parameters,
        "responses": responses,
    }


@cache
def spec() -> dict[str, Any]:
    """The OpenAPI document: every endpoint of every version, and ``/api/``."""
    paths: dict[str, Any] = {}
    for version in (*VERSIONS, None):
        base = f"/api/{version}/" if version else "/api/"
        paths[base] = {
            "get": {
                "operationId": f"{version or 'latest'}-index",
                "summary": "The API's index",
                "responses": {
                    "200": {
                        "description": "Each resource's list URL",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                }
                            }
                        },
                    }
                },
            }
        }
        for endpoint in API.endpoints:
            if endpoint.served_at(version):
                operation = _operation(
                    version, endpoint.resource, endpoint.kind, endpoint.parameters
                )
                paths[base + endpoint.path] = {"get": operation}
    paths["/_gateway/changes"] = {"get": _changes_operation()}
    paths["/_gateway/snapshot"] = {"get": _snapshot_operation()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Patchwork REST API (served by patchwork-gateway)",
            "version": LATEST,
            "description": (
                "Patchwork's REST API, versions 1.0 to 1.4 and the unversioned "
                "latest, as the gateway serves it from its mirror.  Writes "
                "(POST, PUT, PATCH, DELETE) are forwarded to the upstream Patchwork "
                "with the caller's credentials and are not described here."
            ),
        },
        "paths": paths,
    }


def _changes_operation() -> dict[str, Any]:
    """The gateway's change feed (gateway.feed), beside Patchwork's API."""

    def query(name: str, schema: dict[str, Any], text: str, many: bool = False) -> dict[str, Any]:
        if many:
            schema = {"type": "array", "items": schema}
        return {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema,
            "description": text,
            **({"explode": True} if many else {}),
        }

    def failure(text: str) -> dict[str, Any]:
        detail = {"type": "object", "properties": {"detail": {"type": "string"}}}
        return {"description": text, "content": {"application/json": {"schema": detail}}}

    entry = {
        "type": "object",
        "required": ["seq", "resource", "id", "op", "project", "date", "url"],
        "properties": {
            "seq": {"type": "integer"},
            "resource": {"type": "string", "enum": list(RESOURCES)},
            "id": {"type": "integer"},
            "op": {"type": "string", "enum": ["created", "changed", "deleted"]},
            "project": {"type": ["string", "null"]},
            "date": {"type": "string"},
            "url": {"type": ["string", "null"]},
            "object": {"description": "With expand=1: the object as /api/ shows it, or null"},
        },
    }
    page = {
        "type": "object",
        "required": ["changes", "next", "more"],
        "properties": {
            "changes": {"type": "array", "items": entry},
            "next": {"type": "string"},
            "more": {"type": "boolean"},
        },
    }
    return {
        "operationId": "gateway-changes",
        "tags": ["gateway"],
        "summary": "What changed in the mirror since a cursor",
        "description": (
            "Every object whose API representation changed, each change once and in "
            "order, from the cursor 'since' on (without it: nothing, and the cursor of "
            "now; '0': from the oldest change kept).  Anonymous callers see no people "
            "or users; private bundles never appear.  With 'Accept: text/event-stream' "
            "the same filters stream as server-sent events, whose id is the cursor "
            "(resume with Last-Event-ID)."
        ),
        "parameters": [
            query(
                "since",
                {"type": "string", "pattern": "^(0|[0-9a-f]+-[0-9]{1,18})$"},
                "A cursor from an earlier answer",
            ),
            query("limit", {"type": "integer", "minimum": 1}, f"At most {MAX_LIMIT}"),
            query("resource", {"type": "string", "enum": list(RESOURCES)}, "Only these", True),
            query("project", {"type": "string"}, "Only these projects (link names or ids)", True),
            query("expand", {"type": "string", "enum": ["0", "1"]}, "Include each object"),
            query(
                "wait",
                {"type": "number", "minimum": 0, "maximum": MAX_WAIT},
                "Seconds to hold the request until there are changes",
            ),
        ],
        "responses": {
            "200": {
                "description": "The changes, where to go on from, whether more are waiting",
                "content": {"application/json": {"schema": page}},
            },
            "400": failure("A parameter the feed cannot take"),
            "401": failure("Upstream refused the credentials"),
            "403": failure("Upstream refused the credentials"),
            "410": failure("The cursor is older than what the change log keeps"),
            "503": failure("Too many streams and held requests, or the mirror is busy"),
        },
    }


def _snapshot_operation() -> dict[str, Any]:
    """A copy of the mirror for a replica to start from (gateway.feed.snapshot)."""
    busy = {"type": "object", "properties": {"detail": {"type": "string"}}}
    packed = {"application/gzip": {"schema": {"type": "string", "format": "binary"}}}
    return {
        "operationId": "gateway-snapshot",
        "tags": ["gateway"],
        "summary": "A consistent copy of the mirror (SQLite, gzip), for a replica to start from",
        "description": (
            "The whole mirror to callers presenting the replication token "
            "(Authorization: Bearer), what anonymous callers may read to others "
            "(X-Gateway-Snapshot says which); X-Gateway-Cursor is where it stands in "
            "the change feed.  Range requests resume an interrupted download."
        ),
        "responses": {
            "200": {"description": "The snapshot", "content": packed},
            "206": {"description": "Part of it (Range)", "content": packed},
            "503": {
                "description": "Being made: retry after Retry-After seconds",
                "content": {"application/json": {"schema": busy}},
            },
        },
    }


@cache
def spec_json() -> bytes:
    return orjson.dumps(spec(), option=orjson.OPT_INDENT_2)


@cache
def page() -> bytes:
    """The description as a page to read (no script: it works anywhere)."""
    rows = []
    for path, methods in spec()["paths"].items():
        op = methods["get"]
        params = ", ".join(
            f"<code>{html.escape(p['name'])}</code>" for p in op.get("parameters", [])
        )
        codes = ", ".join(op["responses"])
        rows.append(
            f"<tr><td><code>GET {html.escape(path)}</code></td><td>{html.escape(op['summary'])}"
            f"</td><td>{params}</td><td>{codes}</td></tr>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Patchwork API documentation</title><style>"
        "body{font:15px/1.5 system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.3em .6em;"
        "vertical-align:top;text-align:left}code{font-size:.9em}</style></head><body>"
        "<h1>Patchwork REST API</h1>"
        f"<p>{html.escape(spec()['info']['description'])}</p>"
        '<p>Machine-readable: <a href="/api/docs/openapi.json">OpenAPI 3.1 (JSON)</a>; '
        "each endpoint also answers <code>?format=api</code> with a browsable page.</p>"
        "<table><tr><th>Endpoint</th><th>What</th><th>Query parameters</th>"
        f"<th>Statuses</th></tr>{''.join(rows)}</table></body></html>\n"
    ).encode()


async def json_handler(request: web.Request) -> web.Response:
    return web.Response(body=spec_json(), content_type="application/json")


async def page_handler(request: web.Request) -> web.Response:
    if request.path == "/api/docs":
        raise web.HTTPMovedPermanently("/api/docs/")
    response = web.Response(body=page(), content_type="text/html", charset="utf-8")
    response.headers.extend(HTML_SAFETY)
    return response
