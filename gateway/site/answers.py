"""Answering Patchwork's site paths: downloads and pages from the mirror,
legacy redirects, and what only upstream serves.

Downloads (mboxes, raw diffs) and pages are built from the mirror, the
same for every caller who may see them, and kept like anonymous API
answers.  What the mirror lacks a part of is read upstream once, then
built (gateway.upstream.forwarding).  A bundle not known public is
Patchwork's 404 to an anonymous caller; to one with credentials (perhaps
its owner) upstream answers, with them.  Pages only upstream serves
(logins, settings, administration) are redirected there.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING

from gateway.api.routing import SiteRoute
from gateway.responses import NOT_FOUND, READ_METHODS, Answer, NotFoundPage, Reply, redirect
from gateway.site.downloads import Downloads, Missing
from gateway.site.pages import Pages
from mirror.dependencies import ANYTHING, note
from mirror.reader import Reader

if TYPE_CHECKING:
    from gateway.upstream.forwarding import Asking, Forwarding

log = logging.getLogger(__name__)

#: A bundle the mirror does not know as public (``_build``'s answer).
_NOT_PUBLIC = Answer(404)

_NO_UPSTREAM = Answer(
    503,
    b"This gateway has no upstream: this page is served by Patchwork itself "
    b"(logins, settings, administration), or needs what the mirror lacks.\n",
    (("Content-Type", "text/plain; charset=utf-8"),),
)


class Site:
    def __init__(self, reader: Reader, upstream: str) -> None:
        self.reader = reader
        self.upstream = upstream
        self.downloads = Downloads(reader)
        self.pages = Pages(reader)
        self.not_found = NotFoundPage()

    async def answer(self, ctx: Asking, forwarding: Forwarding | None) -> Reply:
        """The answer to a site path (``ctx.site``)."""
        site = ctx.site
        assert site is not None
        if site.kind == "redirect-by-id":
            location = self._location_by_id(site)
            return Reply.mirror(redirect(302, location) if location else self._404(ctx))
        if site.kind in ("download", "page") and ctx.read:
            try:
                built = await self._build_or_fetch(ctx, forwarding)
            except sqlite3.Error as exc:
                log.warning("%s: the mirror cannot answer: %s", ctx.request.path, exc)
                built = None
            if built is _NOT_PUBLIC:
                identified = ctx.credentials is not None and ctx.credentials.readable
                if not identified:
                    hidden = self.downloads.hidden_bundle(site.project or "", site.msgid or "")
                    return Reply.mirror(self._404(ctx) if hidden is NOT_FOUND else hidden, True)
                if site.kind == "download" and forwarding is not None:
                    # Perhaps the caller's own private bundle: only upstream
                    # knows.  Forwarded with the credentials, never redirected
                    # (clients drop Authorization on a redirect to another origin).
                    return Reply.upstream(await forwarding.forward(ctx))
            elif built is not None:
                return Reply.mirror(self._404(ctx) if built is NOT_FOUND else built, keep=True)
        return Reply.mirror(self._elsewhere(ctx))

    def _404(self, ctx: Asking) -> Answer:
        return self.not_found.answer(ctx.request.path)

    def _elsewhere(self, ctx: Asking) -> Answer:
        """A page only upstream serves, or what the mirror could not build."""
        if not self.upstream:
            return _NO_UPSTREAM
        target = self.upstream + ctx.request.rel_url.raw_path_qs
        return redirect(302 if ctx.request.method in READ_METHODS else 307, target)

    async def _build_or_fetch(self, ctx: Asking, forwarding: Forwarding | None) -> Answer | None:
        """A download or page from the mirror.  What it lacks (a detail never
        fetched) is read upstream into the mirror once, then it is built
        again; ``None`` when it still cannot be."""
        note(ANYTHING)  # (pages and downloads read widely: any change drops them)
        try:
            return await self._build(ctx)
        except Missing as missing:
            if forwarding is None or not await forwarding.fetch_details(ctx, missing.refs):
                return None
        try:
            return await self._build(ctx)
        except Missing as still:
            if forwarding is not None:
                forwarding.unfetchable(still.refs)
            return None

    async def _build(self, ctx: Asking) -> Answer | None:
        """A download or page from the mirror (:data:`_NOT_PUBLIC` for a
        bundle not known public; :class:`Missing`: the mirror lacks a part)."""
        site, request = ctx.site, ctx.request
        assert site is not None
        owner_or_project, name = site.project or "", site.msgid or ""
        if site.kind == "download":
            series = request.query.getall("series", [""])[-1] if site.suffix == "mbox" else None
            built = self.downloads.answer(site, series)
            return _NOT_PUBLIC if built is None else built
        if site.resource == "list":
            return await self.pages.patch_list(owner_or_project, request.query, ctx.origin)
        if site.resource == "index":
            return self.pages.landing()
        if site.resource == "project":
            return self.pages.project(owner_or_project)
        if site.resource == "bundle":
            bundle = self.downloads.public_bundle(owner_or_project, name)
            if bundle is None:
                return _NOT_PUBLIC
            patches = list(bundle.get("patches") or [])
            order = self.downloads.bundle_orders.order(bundle["id"], patches)
            return self.pages.bundle(owner_or_project, name, order)
        return self.pages.submission(owner_or_project, name, site.resource == "patches")

    def _location_by_id(self, site: SiteRoute) -> str | None:
        """Where Patchwork's legacy ``/patch/<id>/...`` URLs redirect."""
        assert site.resource is not None and site.obj_id is not None
        reader = self.reader
        if site.resource == "comments":
            for table, parent_table, key in (
                ("patch_comments", "patches", "patch"),
                ("cover_comments", "covers", "cover"),
            ):
                comment = reader.docs([(table, site.obj_id)]).get((table, site.obj_id))
                if comment is None or comment.get(key) is None:
                    continue
                ref = (parent_table, comment[key])
                parent = reader.docs([ref]).get(ref)
                if parent and parent.get("web_url"):
                    return f"{parent['web_url']}#{site.obj_id}"
            return None
        doc = reader.docs([(site.resource, site.obj_id)]).get((site.resource, site.obj_id))
        if doc is None:
            return None
        if site.suffix == "web":
            return doc.get("web_url")
        mbox = doc.get("mbox")
        if site.suffix == "raw" and mbox and mbox.endswith("/mbox/"):
            return mbox[: -len("mbox/")] + "raw/"
        return mbox
