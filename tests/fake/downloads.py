"""Patchwork's downloads, built as its views build them (``patchwork/views/``).

A patch's mbox (with ``?series=`` its series' patches before it) and raw
diff, a cover's, a series' and a bundle's mbox (a private bundle's to its
owner only, by token or password; a bundle's patches in the order they
were added), and the old-style ``/patch/N/mbox/`` redirects; an mbox's
mails as ``views.utils._submission_to_mbox`` writes them.
``tests/test_fake_patchwork.py`` checks every recorded download byte for
byte.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections.abc import Callable
from email.encoders import encode_7or8bit
from email.header import Header
from email.mime.nonmultipart import MIMENonMultipart
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from tests.fake.api import _URL_SAFE, SERVER_ERROR_PAGE, _Http, _ServerError
from tests.fake.state import Store


def _download_parts(raw_path: str) -> tuple[str, ...] | None:
    """The download view a path names (Patchwork's ``urls.py``), and its
    arguments (path segments, each decoded); None: no download.

    ``("patch", project, msgid, "mbox"|"raw")``, ``("cover", project, msgid)``,
    ``("series", id)``, ``("bundle", owner, name)``, and the old-style
    ``("patch-id", id, "mbox"|"raw")`` and ``("cover-id", id)``.
    """
    if not raw_path.startswith("/") or not raw_path.endswith("/"):
        return None
    parts = [unquote(segment) for segment in raw_path[1:-1].split("/")]
    if not all(parts):
        return None
    number = len(parts) >= 2 and parts[1].isascii() and parts[1].isdigit()
    match parts:
        case ["project", project, "patch", msgid, "mbox" | "raw" as kind]:
            return ("patch", project, msgid, kind)
        case ["project", project, "cover", *msgid, "mbox"] if msgid:
            return ("cover", project, "/".join(msgid))
        case ["series", series, "mbox"] if number:
            return ("series", series)
        case ["bundle", owner, name, "mbox"]:
            return ("bundle", owner, name)
        case ["patch", patch, "mbox" | "raw" as kind] if number:
            return ("patch-id", patch, kind)
        case ["cover", cover, "mbox"] if number:
            return ("cover-id", cover)
    return None


_RESPONSE = re.compile(r"^(Tested|Reviewed|Acked|Signed-off|Nacked|Reported)-by:.*$", re.M | re.I)
_POSTSCRIPT = re.compile("^-{2,3} ?$", re.MULTILINE)
_FILENAME = re.compile(r"[^-_A-Za-z0-9\.]+")


class _PatchMbox(MIMENonMultipart):
    patch_charset = "utf-8"

    def __init__(self, text: str) -> None:
        MIMENonMultipart.__init__(self, "text", "plain", charset=self.patch_charset)
        self.set_payload(text.encode(self.patch_charset))
        encode_7or8bit(self)


_FROM_FORMS: tuple[tuple[re.Pattern[str], Callable[[tuple[Any, ...]], Any]], ...] = (
    (re.compile(r'"?(.*?)"?\s*<([^>]+)>'), lambda g: g[1]),
    (re.compile(r"(.*?)\sat\s(.*?)\s*\(([^\)]+)\)"), lambda g: "@".join(g[0:2])),
    (re.compile(r'"?(.*?)"?\s*\(([^\)]+)\)'), lambda g: g[0]),
    (re.compile(r"(.*)"), lambda g: g[0]),
)
_EMAIL = re.compile(
    r'^[\w!#$%&"*+/=?^`{|}~-]+(?:\.[\w!#$%&"*+/=?^`{|}~-]+)*'
    r"@(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\.)+"
    r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$"
)


def _from_address(header: str) -> str | None:
    """The address of ``parser.split_from_header``."""
    for regex, address in _FROM_FORMS:
        match = regex.match(header)
        if match:
            found = address(match.groups())
            return found if _EMAIL.match(found) else None
    return None


class Downloads(Store):
    """The download views."""

    def _download(
        self, request: web.Request, parts: tuple[str, ...], missing: web.Response
    ) -> web.Response:
        """A patch's mbox (``?series=`` adds the patches before it) or diff, a
        cover's, a series' or a bundle's mbox, or an old-style redirect.

        ``parts``: what :func:`_download_parts` makes of the path; ``missing``:
        the answer to an unknown path (the 404 page).
        """
        o = self._objects
        kind = parts[0]

        def found(content_type: str, filename: str, text: str) -> web.Response:
            headers = {"Content-Type": content_type, "Content-Disposition": filename}
            return web.Response(body=text.encode(), headers=headers)

        def submission(res: str, linkname: str, msgid: str) -> dict[str, Any] | None:
            project = next((p for p in o["projects"].values() if p["link_name"] == linkname), None)
            if project is None:
                return None
            wanted = f"<{msgid}>"
            return next(
                (
                    x
                    for x in o[res].values()
                    if x["project"] == project["id"] and x["msgid"] == wanted
                ),
                None,
            )

        if kind in ("patch-id", "cover-id"):
            res = "patches" if kind == "patch-id" else "covers"
            obj = o[res].get(int(parts[1]))
            if obj is None:
                return missing
            linkname = o["projects"][obj["project"]]["link_name"]
            msgid = obj["msgid"].strip("<>").replace("/", "%2F")
            view = parts[2] if kind == "patch-id" else "mbox"
            path = (
                f"/project/{linkname}/{'patch' if kind == 'patch-id' else 'cover'}/{msgid}/{view}/"
            )
            headers = {"Location": quote(path, _URL_SAFE)}
            return web.Response(
                status=302, headers=headers, content_type="text/html", charset="utf-8"
            )
        if kind == "patch":
            patch = submission("patches", parts[1], parts[2])
            if patch is None:
                return missing
            name = _FILENAME.sub("-", patch["name"]).strip("-")
            if parts[3] == "raw":
                # HttpResponse.write(None) writes "None".
                return found(
                    "text/x-patch", f"attachment; filename={name}.diff", str(patch["diff"])
                )
            series = request.rel_url.query.getall("series", [""])[-1]
            if not series:
                text = self._submission_mbox("patches", patch)
            else:
                try:
                    text = self._series_patch_mbox(patch, series)
                except LookupError:
                    return missing
                except _ServerError:
                    return web.Response(
                        status=500,
                        text=SERVER_ERROR_PAGE,
                        content_type="text/html",
                        charset="utf-8",
                    )
            filename = f"attachment; filename={name}.patch"
            return found("text/plain; charset=utf-8", filename, text)
        if kind == "cover":
            cover = submission("covers", parts[1], parts[2])
            if cover is None:
                return missing
            name = _FILENAME.sub("-", cover["name"]).strip("-")
            text = self._submission_mbox("covers", cover)
            return found("text/plain", f"attachment; filename={name}.mbox", text)
        if kind == "series":
            series_obj = o["series"].get(int(parts[1]))
            if series_obj is None:
                return missing
            title = series_obj["name"] or f"Untitled series #{series_obj['id']}"
            name = _FILENAME.sub("-", title).strip("-")
            ids = sorted(
                self._series_patches.get(series_obj["id"], []),
                key=lambda i: (o["patches"][i]["_number"] or 0, i),
            )
            text = "\n".join(self._submission_mbox("patches", o["patches"][i]) for i in ids)
            return found("text/plain", f"attachment; filename={name}.patch", text)
        # A bundle: its owner and the public see it; bad credentials are anonymous.
        owner, bundle_name = parts[1], parts[2]
        bundle = next(
            (
                b
                for b in o["bundles"].values()
                if b["name"] == bundle_name and o["users"][b["owner"]]["username"] == owner
            ),
            None,
        )
        if bundle is None:
            return missing
        try:
            user = self._identity(request.headers.get("Authorization"))
        except _Http:
            user = None
        if not self._visible_bundle(bundle, user):
            # HttpResponseNotFound(): no page at all.
            return web.Response(status=404, content_type="text/html", charset="utf-8")
        text = "\n".join(
            self._submission_mbox("patches", o["patches"][i]) for i in bundle["patches"]
        )
        filename = f"attachment; filename=bundle-{bundle['id']}-{bundle['name']}.mbox"
        return found("text/plain", filename, text)

    def _series_patch_mbox(self, patch: dict[str, Any], series: str) -> str:
        """``series_patch_to_mbox``: the patches of its series before it, then
        it (LookupError: a 404; _ServerError: a 500)."""
        if series == "*":
            if patch["_series"] is None:
                raise LookupError(series)
        else:
            try:
                number = int(series)
            except ValueError:
                raise LookupError(series) from None
            if patch["_series"] is None:
                raise _ServerError  # ``patch.series.id`` of None
            if patch["_series"] != number:
                raise LookupError(series)
        patches = self._objects["patches"]
        before = [
            i
            for i in self._series_patches.get(patch["_series"], [])
            if (patches[i]["_number"] or 0) < (patch["_number"] or 0)
        ]
        before.sort(key=lambda i: (patches[i]["_number"], i))
        return "\n".join(
            self._submission_mbox("patches", m) for m in [*(patches[i] for i in before), patch]
        )

    def _submission_mbox(self, res: str, obj: dict[str, Any]) -> str:
        """``views.utils._submission_to_mbox`` of a patch or a cover; the
        headers as the stored (REST) dict holds them."""
        o = self._objects
        is_patch = res == "patches"
        body = ""
        if obj.get("content"):
            body = obj["content"].strip() + "\n"
        parts = _POSTSCRIPT.split(body, 1)
        if len(parts) == 2:
            body, postscript = parts
            body = body.strip() + "\n"
            postscript = postscript.rstrip()
        else:
            postscript = ""
        kind = "patch-comments" if is_patch else "cover-comments"
        comments = [o[kind][i] for i in self._children[kind].get(obj["id"], [])]
        for comment in sorted(comments, key=lambda c: (c["_date"], c["id"])):
            content = comment.get("content") or ""
            body += "".join(match.group(0) + "\n" for match in _RESPONSE.finditer(content))
        if postscript:
            body += "---" + postscript + "\n"
        if is_patch and obj.get("diff"):
            body += "\n" + obj["diff"]
        date = obj["_date"]
        utc_timestamp = int(date.replace(tzinfo=dt.UTC).timestamp())
        mail = _PatchMbox(body)
        submitter = o["people"][obj["submitter"]]
        mail["X-Patchwork-Submitter"] = email.utils.formataddr(
            (str(Header(submitter["name"], mail.patch_charset)), submitter["email"])
        )
        mail["X-Patchwork-Id"] = str(obj["id"])
        if is_patch and obj["delegate"] is not None:
            mail["X-Patchwork-Delegate"] = str(o["users"][obj["delegate"]]["email"])
        mail.set_unixfrom("From patchwork " + date.ctime())
        list_email = o["projects"][obj["project"]]["list_email"]
        for key, values in (obj.get("headers") or {}).items():
            if key in ("Content-Type", "Content-Transfer-Encoding"):
                continue
            for val in values if isinstance(values, list) else [values]:
                if key == "From" and _from_address(val) == list_email:
                    mail["X-Patchwork-Original-From"] = val
                    val = mail["X-Patchwork-Submitter"]
                mail[key] = val
        if "Date" not in mail:
            mail["Date"] = email.utils.formatdate(utc_timestamp)
        return mail.as_bytes(True).decode()
