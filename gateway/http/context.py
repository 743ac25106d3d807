"""What one request is, worked out once and shared by every step.

The pipeline's steps (gateway.http.pipeline) fill it in as the request
goes down: the Host's origin, what to answer with, the
credentials; then the route; then, for API reads, who is asking.  The
step that answers (gateway.http.app) reads it, and so does every step
after: the cache of answers by :meth:`RequestContext.key`, the metrics
by :attr:`RequestContext.label`.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.api.routing import UNMATCHED, ApiRoute, SiteRoute
from gateway.http.cache import Key
from gateway.http.delivery import Prepared
from gateway.http.negotiation import Choice
from gateway.responses import View
from gateway.upstream.clients import ClientAddresses
from gateway.upstream.identity import ANONYMOUS, Caller, Credentials


@dataclass(slots=True, eq=False)
class RequestContext:
    request: web.Request
    #: The origin URLs in the answer point at (from the Host, or public_url).
    origin: str
    #: GET or HEAD.
    read: bool
    #: What the client accepts (JSON, the browsable page, neither).
    choice: Choice
    #: Whether it takes gzip.
    gzip: bool
    #: What upstream would authenticate the request by (None: anonymous).
    credentials: Credentials | None
    clients: ClientAddresses
    #: The API route or site route the path names (none: neither).
    route: ApiRoute | None = None
    site: SiteRoute | None = None
    #: The route's template: the label of its metrics and access log line.
    label: str = UNMATCHED
    #: Who is asking, once upstream has said (API reads with credentials).
    caller: Caller = ANONYMOUS
    #: The mirror's generation when the request began: an answer built
    #: from an older one is not kept.
    generation: int = 0
    _client: str | None = None

    @property
    def private(self) -> bool:
        """Whether the answer may depend on who asks (credentials came)."""
        return self.credentials is not None

    @property
    def client(self) -> str:
        """The client's address (through trusted proxies)."""
        if self._client is None:
            self._client = self.clients.address(self.request)
        return self._client

    def key(self, view: View = View.PUBLIC) -> Key:
        """Where this request's answer (in ``view``) is kept: by the target
        as sent (the same target, the same answer; read off the request
        line, not parsed again)."""
        return (self.origin, self.request.raw_path, view)


@dataclass(frozen=True, slots=True)
class Cached:
    """An answer from the cache of answers, ready to send, and its view."""

    prepared: Prepared
    view: View


#: The route template a request took, kept on the request for the access
#: log (the context itself is not: it refers to the request, and the cycle
#: would leave every request to the garbage collector).
LABEL: web.RequestKey[str] = web.RequestKey("label", str)
