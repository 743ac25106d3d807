"""Downloads from the mirror: patch and cover mboxes, raw diffs, series mboxes.

Built as Patchwork 3.x builds them (``patchwork/views/utils.py``): the
message body split at its first ``---`` line, the reviewers' tags of every
comment inserted before it, the diff appended, then Patchwork's own
headers, the original headers (the list address in ``From`` replaced by
the submitter's, as Patchwork does against DMARC munging), and Python's
``email`` package writing it all, so that the bytes are upstream's.

When the mirror lacks something a download needs (a detail never fetched,
a submitter without an address), :class:`Missing` names the objects whose
details to read again (the caller fetches them, and builds the download
once more).

A bundle's mbox lists its patches in the bundle's own order, which the API
does not show: the sync reads it from upstream's mbox into the mirror
(``bundle_orders``), and a bundle's mbox built here follows it.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from email.encoders import encode_7or8bit
from email.header import Header
from email.mime.nonmultipart import MIMENonMultipart

from gateway.api.routing import SiteRoute
from gateway.responses import HTML, NOT_FOUND, Answer
from mirror.model import Doc
from mirror.reader import Reader

#: Reviewers' tags a comment adds to the mbox, as Patchwork's models list them.
_TAG_LINE = re.compile(r"^(Tested|Reviewed|Acked|Signed-off|Nacked|Reported)-by:.*$", re.M | re.I)
#: Where a message's postscript (diffstat, changelog) starts.
_POSTSCRIPT = re.compile(r"^-{2,3} ?$", re.M)
_UNSAFE_IN_FILENAME = re.compile(r"[^-_A-Za-z0-9\.]+")
_EPOCH = dt.datetime(1970, 1, 1)


class _Mbox(MIMENonMultipart):
    """A text/plain UTF-8 message, its transfer encoding chosen as upstream's."""

    def __init__(self, text: str) -> None:
        super().__init__("text", "plain", charset="utf-8")
        self.set_payload(text.encode("utf-8"))
        encode_7or8bit(self)


def filename(name: str) -> str:
    """A name made safe for ``Content-Disposition``, as Patchwork makes it."""
    return _UNSAFE_IN_FILENAME.sub("-", name).strip("-")


def _address(from_header: str) -> str:
    """The address of a ``From`` value, in the forms Patchwork's parser reads."""
    angle = re.match(r'"?.*?"?\s*<([^>]+)>', from_header)
    if angle:
        return angle.group(1)
    spelled = re.match(r"(.*?)\sat\s(.*?)\s*\([^)]+\)", from_header)
    if spelled:
        return f"{spelled.group(1)}@{spelled.group(2)}"
    commented = re.match(r'"?(.*?)"?\s*\([^)]+\)', from_header)
    if commented:
        return commented.group(1)
    return from_header


def _message(
    sub: Doc,
    comments: list[Doc],
    submitter: Doc,
    delegate_email: str | None,
    list_email: str | None,
    is_patch: bool,
) -> str:
    body = sub["content"].strip() + "\n" if sub.get("content") else ""
    parts = _POSTSCRIPT.split(body, 1)
    postscript = ""
    if len(parts) == 2:
        body = parts[0].strip() + "\n"
        postscript = parts[1].rstrip()
    for comment in comments:
        body += "".join(m.group(0) + "\n" for m in _TAG_LINE.finditer(comment.get("content") or ""))
    if postscript:
        body += "---" + postscript + "\n"
    if is_patch and sub.get("diff"):
        body += "\n" + sub["diff"]

    date = dt.datetime.fromisoformat(sub["date"])
    mail = _Mbox(body)
    shown = str(Header(submitter.get("name") or "", "utf-8"))
    mail["X-Patchwork-Submitter"] = email.utils.formataddr((shown, submitter["email"]))
    mail["X-Patchwork-Id"] = str(sub["id"])
    if delegate_email is not None:
        mail["X-Patchwork-Delegate"] = delegate_email
    mail.set_unixfrom("From patchwork " + date.ctime())
    for key, value in (sub.get("headers") or {}).items():
        if key in ("Content-Type", "Content-Transfer-Encoding"):
            continue
        for one in value if isinstance(value, list) else [value]:
            if key == "From" and _address(one) == list_email:
                mail["X-Patchwork-Original-From"] = one
                one = mail["X-Patchwork-Submitter"]
            mail[key] = one
    if "Date" not in mail:
        delta = date - _EPOCH
        mail["Date"] = email.utils.formatdate(delta.seconds + delta.days * 86400)
    return mail.as_bytes(True).decode()


def _attachment(text: str, content_type: str, name: str) -> Answer:
    return Answer(
        200,
        text.encode(),
        (("Content-Type", content_type), ("Content-Disposition", f"attachment; filename={name}")),
    )


class Missing(Exception):
    """The mirror lacks part of a download: the details of these objects
    (``("patches", 7)``...) bring what is missing."""

    def __init__(self, *refs: tuple[str, int]) -> None:
        super().__init__(", ".join(f"{table} {obj_id}" for table, obj_id in refs))
        self.refs = refs


def in_bundle_order(order: list[int], patches: list[int]) -> list[int]:
    """A bundle's patches in its order as last read upstream; patches it did
    not list then (added since) come after, in the API's order."""
    members = set(patches)
    known = list(dict.fromkeys(i for i in order if i in members))
    listed = set(known)
    return known + [i for i in patches if i not in listed]


class BundleOrders:
    """Each bundle's patch order, as the mirror holds it."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def order(self, bundle_id: int, patches: list[int]) -> list[int]:
        """The bundle's ``patches`` (as the API lists them) in its own order."""
        return in_bundle_order(self.reader.bundle_order(bundle_id), patches)


class Downloads:
    """Builds downloads from what the reader holds."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.bundle_orders = BundleOrders(reader)

    def public_bundle(self, owner: str, name: str) -> Doc | None:
        """The public bundle ``owner``/``name`` (private ones only upstream knows
        to show, to their owner)."""
        rows = self.reader.rows(
            "SELECT b.id FROM bundles b JOIN users u ON u.id = b.owner_id "
            "WHERE u.username = ? AND b.name = ? AND b.public = 1",
            (owner, name),
        )
        return (
            self.reader.docs([("bundles", rows[0][0])]).get(("bundles", rows[0][0]))
            if rows
            else None
        )

    def hidden_bundle(self, owner: str, name: str) -> Answer:
        """What Patchwork answers an anonymous caller for a bundle not public:
        an empty 404 for a bundle that exists, its 404 page for one that does
        not.  The mirror holds the sync identity's private bundles; another
        user's is taken to exist when the user does (a name made up for a
        known user gets the empty 404 too)."""
        if self.reader.user_named(owner) is None:
            return NOT_FOUND
        return Answer(404, b"", (("Content-Type", HTML),))

    def answer(self, site: SiteRoute, series_param: str | None) -> Answer | None:
        """The download ``site`` names, or ``NOT_FOUND`` (the caller renders
        the 404 page); ``None`` for a
        bundle not known public here (only upstream may show it).

        Raises :class:`Missing` when the mirror lacks a part of it."""
        if site.resource == "series":
            return self._series(site.obj_id)
        if site.resource == "bundles":
            return self.bundle(site.project or "", site.msgid or "")
        project = self.reader.project_named(site.project or "")
        if project is None:
            return NOT_FOUND
        if site.resource == "covers":
            return self._cover(project, site.msgid or "")
        return self._patch(project, site.msgid or "", site.suffix == "raw", series_param)

    def _mbox_of(self, sub: Doc, project: Doc, is_patch: bool) -> str:
        # (A submission's detail carries all it needs: its submitter and
        # delegate come embedded in it, with their addresses.)
        again = Missing(("patches" if is_patch else "covers", sub["id"]))
        if "content" not in sub or "headers" not in sub or (is_patch and "diff" not in sub):
            raise again  # the detail was never fetched
        people = self.reader.docs([("people", sub["submitter"])])
        submitter = people.get(("people", sub["submitter"]))
        if submitter is None or not submitter.get("email"):
            raise again
        delegate_email = None
        if is_patch and sub.get("delegate") is not None:
            users = self.reader.docs([("users", sub["delegate"])])
            delegate = users.get(("users", sub["delegate"]))
            if delegate is None or "email" not in delegate:
                raise again
            delegate_email = str(delegate["email"])
        if is_patch:
            comments = self.reader.children("patch_comments", "patch_id", sub["id"])
        else:
            comments = self.reader.children("cover_comments", "cover_id", sub["id"])
        list_email = project.get("list_email")
        return _message(sub, comments, submitter, delegate_email, list_email, is_patch)

    # -- downloads --------------------------------------------------------

    def _patch(self, project: Doc, msgid: str, raw: bool, series_param: str | None) -> Answer:
        patch = self.reader.by_msgid("patches", project["id"], msgid)
        if patch is None:
            return NOT_FOUND
        name = filename(patch.get("name") or "")
        if raw:
            if "diff" not in patch:
                raise Missing(("patches", patch["id"]))
            diff = patch["diff"]
            text = "None" if diff is None else diff  # (as Django writes None)
            return _attachment(text, "text/x-patch", f"{name}.diff")
        patches = [patch]
        if series_param:
            chain = self._dependencies(patch, series_param)
            if isinstance(chain, Answer):
                return chain
            patches = chain
        text = self._mboxes([each["id"] for each in patches], patches)
        return _attachment(text, "text/plain; charset=utf-8", f"{name}.patch")

    def _mboxes(self, ids: list[int], known: list[Doc] | None = None) -> str:
        """The mboxes of these patches, one after the other (as upstream
        joins them)."""
        found = {doc["id"]: doc for doc in known or ()}
        texts = []
        missing: list[tuple[str, int]] = []
        for obj_id in ids:
            patch = found.get(obj_id) or self.reader.full("patches", obj_id)
            ref = ("projects", patch["project"]) if patch is not None else None
            project = self.reader.docs([ref]).get(ref) if ref is not None else None
            if patch is None or project is None:
                missing.append(("patches", obj_id))
                continue
            try:
                texts.append(self._mbox_of(patch, project, True))
            except Missing as exc:
                missing.extend(exc.refs)
        if missing:
            raise Missing(*missing)  # (all of them: one fetch brings them all)
        return "\n".join(texts)

    def _dependencies(self, patch: Doc, series_param: str) -> list[Doc] | Answer:
        """The patch after those before it in its series (``?series=``)."""
        series_ids = patch.get("series") or []
        if series_param != "*":
            try:
                wanted = int(series_param)
            except ValueError:
                return NOT_FOUND
            if not series_ids or series_ids[0] != wanted:
                return NOT_FOUND
        elif not series_ids:
            return NOT_FOUND
        series = self.reader.docs([("series", series_ids[0])]).get(("series", series_ids[0]))
        members = list(series.get("patches") or []) if series is not None else []
        if patch["id"] not in members:
            raise Missing(("series", series_ids[0]))
        before = members[: members.index(patch["id"])]
        found = [self.reader.full("patches", obj_id) for obj_id in before]
        absent = [("patches", i) for i, doc in zip(before, found, strict=True) if doc is None]
        if absent:
            raise Missing(*absent)
        return [doc for doc in found if doc is not None] + [patch]

    def _cover(self, project: Doc, msgid: str) -> Answer:
        cover = self.reader.by_msgid("covers", project["id"], msgid)
        if cover is None:
            return NOT_FOUND
        text = self._mbox_of(cover, project, False)
        return _attachment(text, "text/plain", f"{filename(cover.get('name') or '')}.mbox")

    def bundle(self, owner: str, name: str) -> Answer | None:
        """A public bundle's mbox from the mirror, in upstream's order."""
        bundle = self.public_bundle(owner, name)
        if bundle is None:
            return None  # unknown here, or private: upstream decides
        text = self._mboxes(
            self.bundle_orders.order(bundle["id"], list(bundle.get("patches") or []))
        )
        return _attachment(text, "text/plain", f"bundle-{bundle['id']}-{bundle['name']}.mbox")

    def _series(self, series_id: int | None) -> Answer:
        docs = self.reader.docs([("series", series_id or 0)])
        series = docs.get(("series", series_id or 0))
        if series is None:
            return NOT_FOUND
        title = series.get("name") or f"Untitled series #{series['id']}"
        text = self._mboxes(list(series.get("patches") or []))
        return _attachment(text, "text/plain", f"{filename(title)}.patch")
