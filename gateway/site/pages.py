"""Pages to read patches offline: a patch, a cover letter, a project's list.

The ``web_url`` of a patch or cover, and a project's patch list (a
series' ``web_url`` is that list narrowed to the series), rendered from
the mirror as plain, read-only HTML: no script, no asset from anywhere,
so they work without network.  A patch page shows its title, submitter,
date, state, delegate, tags, checks, the other patches of its series,
the comments and the diff, coloured, with links to the mbox and raw
downloads.  The list reads the API's own answer (gateway.api.endpoints), so its
filters are the API's: ``state``, ``submitter``, ``delegate``,
``archived``, ``series`` and ``q``.
"""

from __future__ import annotations

import html
import re
from typing import Any

import orjson
from multidict import MultiDict, MultiMapping

from gateway.api import endpoints as api
from gateway.api.routing import resolve_api
from gateway.responses import HTML, NOT_FOUND, Answer
from mirror.model import Doc
from mirror.reader import Reader

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#2c3e50;color:#fff;padding:.6em 1.2em}header a{color:#fff}
main{max-width:72em;margin:1em auto;padding:0 1em}
h1{font-size:1.35em;margin:.4em 0}
table{border-collapse:collapse;width:100%;background:#fff}
td,th{border-bottom:1px solid #e3e3e3;padding:.3em .5em;text-align:left;vertical-align:top}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dl.meta dt{color:#666}
.state{padding:.05em .5em;border-radius:3px;background:#e8eef5}
.check-success{color:#1a7f37}.check-warning{color:#9a6700}.check-fail{color:#cf222e}
.check-pending{color:#57606a}
pre{background:#fff;border:1px solid #ddd;padding:.8em;overflow:auto;font-size:13px;
line-height:1.35}
.diff .add{color:#116329;background:#e6ffec}.diff .del{color:#82071e;background:#ffebe9}
.diff .hunk{color:#0550ae;background:#ddf4ff}.diff .meta{font-weight:bold;color:#444}
.comment{border-left:3px solid #ccd;padding-left:.8em;margin:1em 0}
nav a,.downloads a{margin-right:1em}.current{font-weight:bold}
form.filters{margin:.6em 0}form.filters input,form.filters select{margin-right:.6em}
"""


def _page(title: str, body: str) -> Answer:
    text = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        '<header><a href="/api/?format=api">Patchwork</a> (mirror, read-only)</header>'
        f"<main>{body}</main></body></html>\n"
    )
    return Answer(200, text.encode(), (("Content-Type", HTML),))


def _diff(diff: str) -> str:
    """A unified diff, one span a line, classed for colours."""
    out = []
    for line in diff.splitlines():
        if line.startswith(("diff ", "index ", "--- ", "+++ ", "new file", "deleted file")):
            kind = "meta"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            out.append(html.escape(line))
            continue
        out.append(f'<span class="{kind}">{html.escape(line)}</span>')
    return "\n".join(out)


def _who(person: Doc | None) -> str:
    if not person:
        return "unknown"
    name = person.get("name") or person.get("username") or ""
    return html.escape(f"{name} <{person.get('email', '')}>".strip())


class Pages:
    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def _doc(self, table: str, obj_id: Any) -> Doc | None:
        if obj_id is None:
            return None
        return self.reader.docs([(table, obj_id)]).get((table, obj_id))

    # -- a patch or a cover ---------------------------------------------------

    def submission(self, linkname: str, msgid: str, is_patch: bool) -> Answer | None:
        """The page of a patch or cover; ``None`` when the mirror lacks it
        (``NOT_FOUND`` when there is no such thing)."""
        project = self.reader.project_named(linkname)
        if project is None:
            return NOT_FOUND
        table = "patches" if is_patch else "covers"
        sub = self.reader.by_msgid(table, project["id"], msgid)
        if sub is None:
            return NOT_FOUND
        if "content" not in sub:
            return None
        base = f"/project/{html.escape(linkname)}/{'patch' if is_patch else 'cover'}/"
        here = base + html.escape(msgid) + "/"
        rows = [
            ("Submitter", _who(self._doc("people", sub.get("submitter")))),
            ("Date", html.escape(sub.get("date", ""))),
            ("Message ID", html.escape(sub.get("msgid", ""))),
            ("Project", html.escape(project.get("name", ""))),
        ]
        if is_patch:
            rows += [
                (
                    "State",
                    f'<span class="state">{html.escape(str(sub.get("state")))}</span>'
                    + (" (archived)" if sub.get("archived") else ""),
                ),
                (
                    "Delegate",
                    _who(self._doc("users", sub.get("delegate")))
                    if sub.get("delegate") is not None
                    else "none",
                ),
                (
                    "Tags",
                    html.escape(", ".join(f"{k}: {v}" for k, v in (sub.get("tags") or {}).items()))
                    or "none",
                ),
            ]
            if sub.get("commit_ref"):
                rows.append(("Commit", html.escape(sub["commit_ref"])))
        meta = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
        parts = [
            f"<h1>{html.escape(sub.get('name') or '')}</h1>",
            f'<dl class="meta">{meta}</dl>',
            f'<p class="downloads"><a href="{here}mbox/">mbox</a>'
            + (f'<a href="{here}raw/">raw diff</a>' if is_patch else "")
            + "</p>",
        ]
        parts.append(self._series_nav(sub, is_patch))
        if is_patch:
            parts.append(self._checks(sub["id"]))
        parts.append(f"<h2>Message</h2><pre>{html.escape(sub.get('content') or '')}</pre>")
        table_c, column = (
            ("patch_comments", "patch_id") if is_patch else ("cover_comments", "cover_id")
        )
        for comment in self.reader.children(table_c, column, sub["id"]):
            who = _who(self._doc("people", comment.get("submitter")))
            parts.append(
                f'<div class="comment" id="{comment["id"]}"><p><b>{who}</b> '
                f"{html.escape(comment.get('date', ''))}</p>"
                f"<pre>{html.escape(comment.get('content') or '')}</pre></div>"
            )
        if is_patch and sub.get("diff"):
            parts.append(f'<h2>Diff</h2><pre class="diff">{_diff(sub["diff"])}</pre>')
        return _page(sub.get("name") or "Patch", "\n".join(parts))

    def _series_nav(self, sub: Doc, is_patch: bool) -> str:
        series_ids = sub.get("series") or []
        if not series_ids:
            return ""
        series = self._doc("series", series_ids[0])
        if series is None:
            return ""
        links = []
        cover = self._doc("covers", series.get("cover_letter"))
        if cover is not None and cover.get("web_url"):
            current = ' class="current"' if not is_patch and cover["id"] == sub["id"] else ""
            links.append(
                f'<li><a{current} href="{html.escape(cover["web_url"])}">'
                f"{html.escape(cover.get('name') or '')}</a></li>"
            )
        for obj_id in series.get("patches") or []:
            patch = self._doc("patches", obj_id)
            if patch is None:
                continue
            current = ' class="current"' if is_patch and obj_id == sub["id"] else ""
            links.append(
                f'<li><a{current} href="{html.escape(patch.get("web_url") or "")}">'
                f"{html.escape(patch.get('name') or '')}</a></li>"
            )
        title = html.escape(series.get("name") or f"Series #{series['id']}")
        mbox = html.escape(series.get("mbox") or "")
        return (
            f'<nav class="series"><h2>Series: {title}</h2><ol>{"".join(links)}</ol>'
            f'<a href="{mbox}">series mbox</a></nav>'
        )

    def _checks(self, patch_id: int) -> str:
        checks = self.reader.children("checks", "patch_id", patch_id)
        if not checks:
            return "<h2>Checks</h2><p>none</p>"
        rows = []
        for check in checks:
            state = html.escape(str(check.get("state")))
            target = check.get("target_url")
            context = html.escape(check.get("context") or "")
            if target:
                context = f'<a href="{html.escape(target)}">{context}</a>'
            rows.append(
                f'<tr><td>{context}</td><td class="check-{state}">{state}</td>'
                f"<td>{html.escape(check.get('description') or '')}</td>"
                f"<td>{html.escape(check.get('date', ''))}</td></tr>"
            )
        return (
            "<h2>Checks</h2><table><tr><th>Context</th><th>State</th><th>Description</th>"
            f"<th>Date</th></tr>{''.join(rows)}</table>"
        )

    # -- the landing page, a project, a bundle ------------------------------------

    def landing(self) -> Answer:
        """``/``: the projects mirrored, with links to their lists, the API and
        its description."""
        ids = [row[0] for row in self.reader.rows("SELECT id FROM projects ORDER BY id")]
        projects = self.reader.docs([("projects", obj_id) for obj_id in ids])
        rows = []
        for obj_id in ids:
            project = projects.get(("projects", obj_id))
            if project is None:
                continue
            link = html.escape(str(project.get("link_name") or ""))
            name = html.escape(project.get("name") or "") or link
            rows.append(
                f'<tr><td><a href="/project/{link}/list/">{name}</a></td>'
                f"<td>{html.escape(project.get('list_email') or '')}</td>"
                f'<td><a href="/project/{link}/">about</a></td></tr>'
            )
        body = (
            "<h1>Projects</h1><table><tr><th>Project</th><th>Mailing list</th><th></th></tr>"
            f"{''.join(rows) or '<tr><td>none mirrored yet</td></tr>'}</table>"
            '<p><a href="/api/">The REST API</a> (<a href="/api/?format=api">browsable</a>) '
            'and <a href="/api/docs/">its description</a>.</p>'
        )
        return _page("Patchwork", body)

    def project(self, linkname: str) -> Answer:
        """``/project/<name>/``: what the mirror knows of a project."""
        project = self.reader.project_named(linkname)
        if project is None:
            return NOT_FOUND
        link = html.escape(linkname)
        rows = [("Name", html.escape(project.get("name") or ""))]
        for label, key in (
            ("Mailing list", "list_email"),
            ("Archive", "list_archive_url"),
            ("Website", "web_url"),
            ("Repository", "scm_url"),
            ("Repository browser", "webscm_url"),
        ):
            value = project.get(key)
            if value:
                shown = html.escape(str(value))
                linked = key != "list_email" and str(value).startswith(("http://", "https://"))
                rows.append((label, f'<a href="{shown}">{shown}</a>' if linked else shown))
        meta = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
        body = (
            f"<h1>{html.escape(project.get('name') or linkname)}</h1>"
            f'<dl class="meta">{meta}</dl>'
            f'<p><a href="/project/{link}/list/">Patches</a>'
            f'<a href="/api/projects/{project["id"]}/?format=api">In the API</a></p>'
        )
        return _page(project.get("name") or linkname, body)

    def bundle(self, owner: str, name: str, patch_ids: list[int]) -> Answer:
        """``/bundle/<owner>/<name>/``: a public bundle's patches, in the
        bundle's order (``patch_ids``)."""
        patches = self.reader.docs([("patches", obj_id) for obj_id in patch_ids])
        rows = []
        for obj_id in patch_ids:
            patch = patches.get(("patches", obj_id))
            if patch is None:
                continue
            rows.append(
                f'<tr><td><a href="{html.escape(_path(patch.get("web_url") or ""))}">'
                f"{html.escape(patch.get('name') or '')}</a></td>"
                f"<td>{html.escape(patch.get('date', '')[:10])}</td>"
                f"<td>{html.escape(str(patch.get('state') or ''))}</td></tr>"
            )
        here = f"/bundle/{html.escape(owner)}/{html.escape(name)}/"
        title = f"Bundle {name} of {owner}"
        body = (
            f"<h1>{html.escape(title)}</h1>"
            f'<p class="downloads"><a href="{here}mbox/">mbox</a></p>'
            "<table><tr><th>Patch</th><th>Date</th><th>State</th></tr>"
            f"{''.join(rows) or '<tr><td>none</td></tr>'}</table>"
        )
        return _page(title, body)

    # -- a project's list -------------------------------------------------------

    async def patch_list(
        self, linkname: str, params: MultiMapping[str], origin: str
    ) -> Answer | None:
        project = self.reader.project_named(linkname)
        if project is None:
            return NOT_FOUND
        query: MultiDict[str] = MultiDict(project=linkname, per_page="50", order="-date")
        for name in ("state", "submitter", "delegate", "archived", "series", "q", "page"):
            for value in params.getall(name, []):
                if value:
                    query.add(name, value)
        if "archived" not in query and "series" not in query:
            query["archived"] = "false"
        route = resolve_api("/api/1.4/patches/")
        assert route is not None
        raw = "&".join(f"{k}={v}" for k, v in query.items())
        answer = await api.serve(route, query, raw, "/api/1.4/patches/", origin, self.reader)
        patches = orjson.loads(answer.body) if answer.status == 200 else []
        rows = []
        for patch in patches:
            submitter = patch.get("submitter") or {}
            rows.append(
                f'<tr><td><a href="{html.escape(_path(patch.get("web_url") or ""))}">'
                f"{html.escape(patch.get('name') or '')}</a></td>"
                f"<td>{html.escape(submitter.get('name') or submitter.get('email') or '')}</td>"
                f"<td>{html.escape(patch.get('date', '')[:10])}</td>"
                f"<td>{html.escape(patch.get('state') or '')}</td>"
                f"<td>{html.escape(patch.get('check') or '')}</td></tr>"
            )
        pages = []
        for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', dict(answer.headers).get("Link", "")):
            number = re.search(r"[?&]page=(\d+)", url)
            kept = {k: v for k, v in params.items() if k != "page"}
            kept["page"] = number.group(1) if number else "1"
            link = "?" + "&".join(f"{html.escape(k)}={html.escape(v)}" for k, v in kept.items())
            pages.append(f'<a href="{link}">{rel}</a>')
        shown = {name: html.escape(params.get(name, "")) for name in ("q", "state", "submitter")}
        form = (
            '<form class="filters" method="get">'
            f'<input name="q" placeholder="search" value="{shown["q"]}">'
            f'<input name="state" placeholder="state" value="{shown["state"]}">'
            f'<input name="submitter" placeholder="submitter" value="{shown["submitter"]}">'
            '<select name="archived"><option value="false">not archived</option>'
            '<option value="true">archived</option></select>'
            "<button>Filter</button></form>"
        )
        title = f"{project.get('name', linkname)}: patches"
        body = (
            f"<h1>{html.escape(title)}</h1>{form}"
            "<table><tr><th>Patch</th><th>Submitter</th><th>Date</th><th>State</th>"
            f"<th>Checks</th></tr>{''.join(rows) or '<tr><td>none</td></tr>'}</table>"
            f"<nav>{' '.join(pages)}</nav>"
        )
        return _page(title, body)


def _path(url: str) -> str:
    """A URL of this site, as a path (it works whatever the origin)."""
    return re.sub(r"^https?://[^/]+", "", url)
