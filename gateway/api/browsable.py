"""The browsable API: the mirror's answer as a page a person can read.

A browser (``Accept: text/html``) or ``?format=api`` gets, as from
Django REST Framework's browsable API, a page showing the request, the
response's status and headers, and its JSON, indented, every URL in it a
link (they carry ``format=api``, so browsing stays in pages), with links
to the other pages of a list.  It is built from the same answer the JSON
client gets, from the mirror, so it works offline; it needs no script and
no asset from anywhere.
"""

from __future__ import annotations

import html
import re
from http import HTTPStatus

import orjson

from gateway.responses import HTML, Answer

_URL = re.compile(r"&quot;(https?://[^&\s]+?)&quot;")
_LINK = re.compile(r'<([^>]+)>; rel="(\w+)"')
_NAMES = {
    "first": "&laquo; First",
    "prev": "&lsaquo; Previous",
    "next": "Next &rsaquo;",
    "last": "Last &raquo;",
}

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#222;background:#f7f7f7}
header{background:#2c3e50;color:#fff;padding:.6em 1.2em}
header a{color:#fff;text-decoration:none;font-weight:600}
main{max-width:70em;margin:1.2em auto;padding:0 1em}
h1{font-size:1.5em;margin:.2em 0 .6em}
.request{background:#eaeef2;padding:.5em .8em;border-radius:4px;font-family:monospace}
pre{background:#fff;border:1px solid #ddd;border-radius:4px;padding:1em;overflow:auto;
white-space:pre-wrap;word-break:break-word}
.headers b{color:#555}
nav.pages a{display:inline-block;margin:.3em .5em .3em 0;padding:.2em .7em;border:1px solid #aaa;
border-radius:4px;background:#fff;text-decoration:none}
footer{color:#777;font-size:.85em;margin:2em 0}
"""


def page(answer: Answer, method: str, path_qs: str, name: str) -> Answer:
    """``answer`` (a JSON answer of the API) as a browsable page titled ``name``."""
    headers = dict(answer.headers)
    try:
        data = orjson.loads(answer.body) if answer.body else None
        shown = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if answer.body else ""
    except orjson.JSONDecodeError:
        shown = answer.body.decode("utf-8", "replace")
    body = _URL.sub(
        lambda m: f'&quot;<a href="{m.group(1)}">{m.group(1)}</a>&quot;', html.escape(shown)
    )
    try:
        reason = HTTPStatus(answer.status).phrase
    except ValueError:
        reason = ""
    shown_headers = "".join(
        f"<b>{html.escape(name)}:</b> {html.escape(value)}\n"
        for name, value in headers.items()
        if name in ("Allow", "Content-Type", "Vary", "Link")
    )
    links = _LINK.findall(headers.get("Link", ""))
    pages = "".join(
        f'<a href="{html.escape(url)}">{_NAMES.get(rel, rel)}</a>' for url, rel in links
    )
    title = html.escape(name)
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title} &ndash; Patchwork API</title><style>{_STYLE}</style></head>
<body><header><a href="/api/?format=api">Patchwork API</a> (mirror)</header><main>
<h1>{title}</h1>
<p class="request">{html.escape(method)} {html.escape(path_qs)}</p>
{f'<nav class="pages">{pages}</nav>' if pages else ""}
<pre class="headers"><b>HTTP {answer.status} {html.escape(reason)}</b>
{shown_headers}</pre>
<pre class="response">{body}</pre>
<footer>Served from the gateway's mirror; the same data as
<a href="{html.escape(_as_json(path_qs))}">this JSON</a>.</footer>
</main></body></html>
"""
    kept = tuple((k, v) for k, v in answer.headers if k in ("Allow", "Link"))
    return Answer(answer.status, text.encode(), (("Content-Type", HTML), *kept, ("Vary", "Accept")))


def _as_json(path_qs: str) -> str:
    """The same URL asking for JSON."""
    path, _, query = path_qs.partition("?")
    kept = [p for p in query.split("&") if p and not p.startswith("format=")]
    return path + "?" + "&".join([*kept, "format=json"])
