"""Delivering an answer over HTTP: validators, caching headers, compression.

Every answer leaves through here, whatever produced it, so that a reader
finds in one place what a client and the HTTP caches between see:

* a strong ``ETag`` (a digest of the body and its ``Link``) on every 200
  answered from the mirror, and ``304 Not Modified`` to an
  ``If-None-Match`` naming it, answered from the cached answer without
  rendering anything;
* ``Cache-Control``: ``public, max-age=N`` for anonymous answers (the same
  for every anonymous caller), ``private, no-cache`` for callers with
  credentials, ``no-store`` for failures that may pass; and ``Vary`` on
  ``Accept``, ``Authorization`` and ``Cookie`` (and ``Accept-Encoding``
  where compressed), so that a shared cache never hands one identity's
  answer to another;
* gzip when the client accepts it, compressed once per cached answer.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import xxhash
from aiohttp import hdrs, web
from multidict import CIMultiDict

from gateway.responses import HTML_SAFETY, Answer

#: Bodies smaller than this are sent as they are (gzip would save little).
MIN_COMPRESS = 1024
#: zlib level: 6 costs twice level 1 for a few percent on Patchwork's JSON.
GZIP_LEVEL = 5
#: Statuses an anonymous answer may be kept for by shared caches.
SHAREABLE = frozenset((200, 301, 302, 403, 404, 406))
PRIVATE = "private, no-cache"
VARY = "Accept, Authorization, Cookie"
VARY_ENCODED = VARY + ", Accept-Encoding"


def _etag(body: bytes, link: str | None) -> str:
    """A 128-bit digest of the body and the ``Link`` header: a page whose
    rows stay while the list grows a page has new links, and a client
    revalidating it must get them.  (A 50 KB page in a microsecond;
    blake2b takes 70.)"""
    digest = xxhash.xxh3_128(body)
    if link:
        digest.update(b"\nLink: " + link.encode())
    return '"' + digest.hexdigest() + '"'


@dataclass(slots=True)
class Prepared:
    """An answer with everything its deliveries share, computed once."""

    answer: Answer
    #: The headers of the plain delivery (validators and caching included).
    headers: dict[str, str]
    etag: str | None
    compressible: bool
    #: Whether a caller with credentials gets ``private`` instead.
    shareable: bool
    gzipped: bytes | None = field(default=None)
    #: The route template it answers (a metrics label: gateway.ops.metrics).
    route: str = "unmatched"
    #: Its tag as sent gzipped (the representation differs: so does the tag).
    etag_gz: str | None = None
    #: The headers of each way it has left (304 or not, gzip or not,
    #: private or not), with ``extra``, built once: a cached answer and a
    #: poller's 304 are the most frequent answers of all.
    sent: dict[tuple[bool, bool, bool], CIMultiDict[str]] = field(default_factory=dict)
    #: The extra headers ``sent`` was built with (the same tuple until the
    #: synced header moves on: compared by identity, never hashed).
    sent_extra: tuple[tuple[str, str], ...] = ()

    @property
    def cost(self) -> int:
        """Bytes kept beyond the answer itself (see gateway.http.cache): the
        headers, as prepared and as sent (most often: plain and 304)."""
        extra = sum(len(k) + len(v) for k, v in self.headers.items())
        gzipped = len(self.gzipped) if self.gzipped is not None else 0
        return 3 * extra + gzipped + len(self.etag_gz or "")


def _vary(headers: dict[str, str], name: str) -> None:
    """Add ``name`` to the ``Vary`` header unless it is there."""
    vary = headers.get("Vary", "")
    if name.lower() not in vary.lower():
        headers["Vary"] = f"{vary}, {name}" if vary else name


def accepts_gzip(header: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header takes gzip (``q`` above 0)."""
    if not header:
        return False
    header = header.lower()
    if "gzip" not in header and "*" not in header:
        return False
    star = False
    for item in header.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip()
        if coding not in ("gzip", "x-gzip", "*"):
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding == "*":
            star = q > 0
        else:
            return q > 0
    return star


def _matches(if_none_match: str, etag: str) -> bool:
    """``If-None-Match`` against a tag, by weak comparison (RFC 9110 13.1.2)."""
    if if_none_match == etag:
        return True  # (what a poller sends back, most often)
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in if_none_match.split(","))


class Delivery:
    """How answers are sent: fixed per server (``max_age``, mode headers)."""

    def __init__(self, max_age: int, mode_header: str) -> None:
        self.public = f"public, max-age={max_age}" if max_age > 0 else "no-cache"
        self.mode_header = mode_header

    def prepare(self, answer: Answer, source: str, private: bool) -> Prepared:
        """What every delivery of ``answer`` shares.

        ``source`` is ``"mirror"`` or ``"upstream"``.  An answer from the
        mirror is prepared as for an anonymous caller (see :meth:`send`);
        ``private``: a forwarded request carried credentials.
        """
        headers = dict(answer.headers)
        headers["X-Patchwork-Gateway"] = self.mode_header if source == "mirror" else source
        if headers.get("Content-Type", "").startswith("text/html"):
            headers.update(HTML_SAFETY)
        etag = None
        compressible = len(answer.body) >= MIN_COMPRESS and "Content-Encoding" not in headers
        shareable = False
        if source == "mirror":
            if answer.status == 200:
                etag = _etag(answer.body, headers.get("Link"))
                headers["ETag"] = etag
            shareable = answer.status in SHAREABLE
            headers["Cache-Control"] = self.public if shareable else "no-store"
            headers["Vary"] = VARY_ENCODED if compressible else VARY
        else:
            if private:
                # Forwarded with the caller's credentials: never for a shared cache.
                headers.setdefault("Cache-Control", "private")
                _vary(headers, "Authorization")
                _vary(headers, "Cookie")
            if compressible:  # (it may leave gzipped, see send)
                _vary(headers, "Accept-Encoding")
        etag_gz = etag[:-1] + '-gz"' if etag is not None and compressible else None
        return Prepared(answer, headers, etag, compressible, shareable, etag_gz=etag_gz)

    def send(
        self,
        request: web.Request,
        prepared: Prepared,
        private: bool,
        gzip: bool,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> web.Response:
        """The response to ``request``: 304, gzip or plain.

        ``private``: the request carried credentials, so no shared cache
        may keep the answer; ``gzip``: the client takes it
        (:func:`accepts_gzip`); ``extra``: headers that change from one
        delivery to the next.
        """
        private = private and prepared.shareable
        gzip = gzip and prepared.compressible
        etag = prepared.etag_gz if gzip else prepared.etag
        if etag is not None:
            condition = request.headers.get(hdrs.IF_NONE_MATCH)
            if condition is not None and _matches(condition, etag):
                headers = _headers(prepared, True, gzip, private, extra)
                return web.Response(status=304, headers=headers)
        body = prepared.answer.body
        if gzip:
            if prepared.gzipped is None:
                prepared.gzipped = _gzip(body)
            body = prepared.gzipped
        headers = _headers(prepared, False, gzip, private, extra)
        # aiohttp sends no body for HEAD, but keeps the GET's Content-Length.
        return web.Response(status=prepared.answer.status, body=body, headers=headers)


def _headers(
    prepared: Prepared,
    not_modified: bool,
    gzip: bool,
    private: bool,
    extra: tuple[tuple[str, str], ...],
) -> CIMultiDict[str]:
    """The headers of one way ``prepared`` leaves (see :meth:`Delivery.send`);
    a 304 repeats the tag and the caching headers only."""
    if extra is not prepared.sent_extra:
        prepared.sent.clear()  # (the synced header moved on)
        prepared.sent_extra = extra
    key = (not_modified, gzip, private)
    headers = prepared.sent.get(key)
    if headers is not None:
        return headers
    full = dict(prepared.headers)
    if private:
        full["Cache-Control"] = PRIVATE
    if gzip:
        full["Content-Encoding"] = "gzip"
        if prepared.etag_gz is not None:
            full["ETag"] = prepared.etag_gz
    if not_modified:
        kept = ("ETag", "Cache-Control", "Vary", "X-Patchwork-Gateway")
        full = {name: full[name] for name in kept if name in full}
    headers = CIMultiDict(full)
    headers.extend(extra)
    prepared.sent[key] = headers
    return headers


def _gzip(body: bytes) -> bytes:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()
