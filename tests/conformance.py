"""Comparing a gateway's answer with the answer recorded from Patchwork."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from sync.recorded import PLACEHOLDER, read_records
from tests.support import CONFORMANCE, Reply, auth_header, request

COMPARED_HEADERS = ("Content-Type", "Link", "Location", "Allow", "Content-Disposition")


def cases(path=CONFORMANCE) -> list[dict[str, Any]]:
    return list(read_records(path))


def _swap(value: Any, origin: str) -> Any:
    return json.loads(json.dumps(value).replace(PLACEHOLDER, origin))


def differences(case: dict[str, Any], reply: Reply, origin: str) -> list[str]:
    """What differs between the recorded answer and ``reply`` (empty: same)."""
    diffs = []
    if case["status"] >= 500:
        if reply.status >= 500:
            diffs.append(f"status {reply.status}: upstream's 500 must not be reproduced")
        return diffs
    if reply.status != case["status"]:
        return [f"status {reply.status} != {case['status']}: {reply.body[:300]!r}"]
    for name in COMPARED_HEADERS:
        want = case["headers"].get(name)
        if want is not None:
            want = want.replace(PLACEHOLDER, origin)
        got = reply.header(name)
        if got != want:
            diffs.append(f"header {name}: {got!r} != {want!r}")
    body = case["body"]
    if isinstance(body, str):
        want_text = body.replace(PLACEHOLDER, origin)
        got_text = reply.body.decode("utf-8", "replace")
        if got_text != want_text:
            diffs.append(f"body differs: {got_text[:200]!r} != {want_text[:200]!r}")
    else:
        try:
            got_json = json.loads(reply.body)
        except ValueError:
            return [*diffs, f"body is not JSON: {reply.body[:200]!r}"]
        want_json = _swap(body, origin)
        if json.dumps(got_json) != json.dumps(want_json):
            diffs.append(_first_json_difference(got_json, want_json))
    return diffs


def _first_json_difference(got: Any, want: Any, where: str = "$") -> str:
    if type(got) is not type(want):
        return f"{where}: {json.dumps(got)[:200]} != {json.dumps(want)[:200]}"
    if isinstance(want, dict):
        if list(got) != list(want):
            return f"{where}: keys {list(got)} != {list(want)}"
        for key in want:
            if json.dumps(got[key]) != json.dumps(want[key]):
                return _first_json_difference(got[key], want[key], f"{where}.{key}")
    if isinstance(want, list):
        if len(got) != len(want):
            ids_got = [g.get("id") if isinstance(g, dict) else g for g in got]
            ids_want = [w.get("id") if isinstance(w, dict) else w for w in want]
            return f"{where}: {len(got)} items {ids_got[:20]} != {len(want)} {ids_want[:20]}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            if json.dumps(g) != json.dumps(w):
                return _first_json_difference(g, w, f"{where}[{i}]")
    return f"{where}: {json.dumps(got)[:200]} != {json.dumps(want)[:200]}"


def ask(case: dict[str, Any], gateway: str, upstream: str) -> tuple[Reply, str, str | None]:
    """Replay ``case`` against the gateway.

    Until the gateway serves downloads itself, it redirects site pages to
    the same path upstream; we then follow that one redirect, checking it
    goes where it should, and compare what the upstream answers.
    Returns the reply, the origin it should carry, and an error if any.
    """
    headers = {**auth_header(case["auth"]), **case.get("request_headers", {})}
    reply = request(case["method"], gateway + case["path"], headers)
    path = case["path"]
    if not path.startswith("/api") and reply.status == 302 and case["status"] != 302:
        location = reply.header("Location") or ""
        if location != upstream + path:
            return reply, gateway, f"redirected to {location!r}, not {upstream + path!r}"
        parts = urlsplit(location)
        followed = request(
            case["method"],
            upstream + parts.path + ("?" + parts.query if parts.query else ""),
            headers,
        )
        return followed, upstream, None
    return reply, gateway, None
