"""What the server holds for its whole life, built at start-up: the reader,
the cache of answers, the delivery rules, the upstream side and the site,
and the verdicts it remembers (Host names, Accept headers)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson
from aiohttp import hdrs, web

from gateway.http import limits
from gateway.http.cache import ResponseCache
from gateway.http.delivery import Delivery, accepts_gzip
from gateway.http.limits import Remembered
from gateway.http.negotiation import Choice, negotiate
from gateway.ops import metrics
from gateway.ops.status import SyncStatus
from gateway.responses import NotFoundPage
from gateway.settings import LOOPBACK, GatewaySettings
from gateway.site.answers import Site
from gateway.upstream.clients import ClientAddresses, Networks
from gateway.upstream.forwarding import Forwarding
from mirror.control import Control
from mirror.dependencies import Changed
from mirror.reader import Reader
from mirror.store import REFUSED

_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
DEMO_HEADER = "demo mirror built from a recorded instance (no upstream configured)"

#: What a request is judged by: its scheme, Host, ``format``, Accept and
#: Accept-Encoding (the few that clients send, always the same ones).
Sent = tuple[str, str, str | None, str | None, str | None]


@dataclass(frozen=True, slots=True)
class Verdicts:
    """What a request's headers say, judged once per distinct set of them."""

    #: The origin URLs point at ("": a Host the gateway does not serve).
    origin: str
    #: What to answer with (gateway.http.negotiation).
    choice: Choice
    #: Whether the client takes gzip.
    gzip: bool


def _length(sent: Sent) -> int:
    return sum(len(part or "") for part in sent[1:])


class GatewayState:
    """Everything the pipeline needs, built at start-up."""

    def __init__(
        self,
        settings: GatewaySettings,
        reader: Reader,
        *,
        demo: bool = False,
        control: Control | None = None,
    ) -> None:
        self.settings = settings
        self.reader = reader
        self.control = control
        self.demo = demo
        self.sync = SyncStatus(control, reader)
        #: What this process counted for /metrics (gateway.ops.metrics).
        self.counts = metrics.Counts()
        self.clients = ClientAddresses(settings.server.trusted_proxies)
        details = settings.server.status_details
        self._details = details if isinstance(details, bool) else Networks(details)
        #: Forwarding, credential checks, read-backs (None: no upstream).
        self.upstream = Forwarding(settings, reader, self.counts) if settings.upstream else None
        self.cache = ResponseCache(settings.server.cache_bytes)
        self.delivery = Delivery(settings.server.cache_max_age, DEMO_HEADER if demo else "mirror")
        self.not_found = NotFoundPage()
        self.site = Site(reader, settings.upstream)
        #: Resources the sync identity may not list (people, users when it
        #: is anonymous): the mirror cannot answer them for anyone.
        self.unmirrored: frozenset[str] = frozenset()
        #: Verdicts on what clients send, bounded (gateway.http.limits).
        self.verdicts: Remembered[Sent, Verdicts] = Remembered(self._judge, _length, chars=600)
        reader.on_change(self._changed)

    def _changed(self, changes: list[Changed] | None) -> None:
        """Drop the answers the mirror's changes reach (``None``: all)."""
        if changes is None:
            self.cache.clear()
            self.load_meta()  # (the 404 page, the lists refused: they may have changed)
        else:
            self.cache.follow(changes)

    def load_meta(self) -> None:
        """What the sync learnt: upstream's 404 page, lists it may not see."""
        raw = self.reader.meta("upstream.404")
        if raw:
            before, after = orjson.loads(raw)
            self.not_found = NotFoundPage((before, after))
            self.site.not_found = self.not_found
        refused = self.reader.meta(REFUSED)
        self.unmirrored = frozenset(orjson.loads(refused)) if refused else frozenset()

    # -- verdicts remembered per header ---------------------------------------

    def judge(self, request: web.Request) -> Verdicts:
        """Its origin, what to answer with and whether gzip: one look-up
        for the headers every client sends the same at each request."""
        headers = request.headers
        fmt = None
        if "format" in request.raw_path:  # (parse the query only then)
            formats = request.query.getall("format", [])
            fmt = formats[-1] if formats else None
        # (Header names as aiohttp's ``istr``: a look-up folds no case.)
        host, accept = headers.get(hdrs.HOST, ""), headers.get(hdrs.ACCEPT)
        return self.verdicts[(request.scheme, host, fmt, accept, headers.get(hdrs.ACCEPT_ENCODING))]

    def origin(self, request: web.Request) -> str | None:
        """The origin URLs point at, or ``None`` for a Host we do not serve."""
        return self.judge(request).origin or None

    def _judge(self, sent: Sent) -> Verdicts:
        scheme, host, fmt, accept, encodings = sent
        origin = self._origin_of(scheme, host) or ""
        return Verdicts(origin, negotiate(fmt, accept), accepts_gzip(encodings))

    def _origin_of(self, scheme: str, host: str) -> str | None:
        if len(host) > limits.MAX_HOST or not _HOST.match(host):
            return None
        allowed = self.settings.server.allowed_hosts
        if allowed and _host_name(host) not in allowed:
            return None
        if self.settings.server.public_url:
            return self.settings.server.public_url
        return f"{scheme}://{host}"

    def may_see_details(self, request: web.Request) -> bool:
        """Whether the request may see every count (``[server] status_details``)."""
        if isinstance(self._details, bool):
            return self._details
        return self.clients.address(request) in self._details


def _host_name(host: str) -> str:
    """A Host header's name, without port or brackets, lower case."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.strip("[]").lower()


def is_loopback(request: web.Request) -> bool:
    """Whether the request names the machine itself (localhost, 127.0.0.1, [::1])."""
    return _host_name(request.headers.get("Host", "")) in LOOPBACK
