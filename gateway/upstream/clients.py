"""Who is asking, as a network address: shares of what one client may spend.

The gateway spends two scarce things on behalf of callers: upstream
requests (forwarded requests, credential checks, read-backs) and the
slots those take.  A global bound alone lets one client take them all, so
each is also shared out per client.  A client is its address, or for IPv6
its /64 (one host usually holds a whole /64).  Behind a reverse proxy
listed in ``[server] trusted_proxies``, the client is the address that
proxy saw, read from the right of ``X-Forwarded-For`` (the entries to its
left are whatever the client sent, and are never trusted).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable

from aiohttp import web
from cachetools import TTLCache

#: Clients whose rate of new credentials is remembered at once (each a
#: few dozen bytes); past this, the least recently seen are forgotten.
MAX_CLIENTS = 10_000

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as text, an IPv4-mapped IPv6 one as IPv4 (a server
    listening on ``::`` sees nginx at 127.0.0.1 as ``::ffff:127.0.0.1``)."""
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Networks:
    """Addresses or networks (``10.0.0.0/8``), parsed once."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self._networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(net, strict=False) for net in networks
        )

    def __contains__(self, address: str) -> bool:
        if not self._networks:
            return False
        ip = _address(address)
        return ip is not None and any(ip in net for net in self._networks)


class ClientAddresses:
    """The client address of a request, through trusted proxies."""

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        self._trusted = Networks(trusted)

    def address(self, request: web.BaseRequest) -> str:
        """The client's address ("" when unknown: a Unix socket, say)."""
        peer = request.remote or ""
        if peer not in self._trusted:
            return peer
        hops: list[str] = []
        for header in request.headers.getall("X-Forwarded-For", []):
            hops.extend(hop.strip() for hop in header.split(","))
        for hop in reversed(hops):
            if hop not in self._trusted:
                return hop[:64]
        return peer


def client_key(address: str) -> str:
    """What one client is, for its shares: an IPv4 address, or an IPv6 /64."""
    ip = _address(address)
    if ip is None:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class TokenBucket:
    """``per_minute`` events a minute, in bursts of ``burst``."""

    def __init__(self, per_minute: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self.tokens = burst
        self.clock = clock
        self.refilled = clock()

    def available(self) -> bool:
        """Whether one event may happen now (refilling first)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        return self.tokens >= 1.0

    def take(self) -> bool:
        """Spend one if available."""
        if not self.available():
            return False
        self.tokens -= 1.0
        return True


class SharedRate:
    """A global rate, of which each client may spend only its ``share``."""

    def __init__(
        self,
        per_minute: float,
        share: float,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self._clock = clock
        self._global = TokenBucket(per_minute, max(1.0, per_minute / 10.0), clock)
        self._per_minute = per_minute * share
        self._burst = max(1.0, self._per_minute / 10.0)
        # A client idle this long has a full bucket again: it can be forgotten.
        idle = 60.0 * self._burst / self._per_minute + 1.0
        self._clients: TTLCache[str, TokenBucket] = TTLCache(max_clients, idle, timer=clock)

    def take(self, client: str) -> bool:
        """Whether ``client`` may spend one now (and then it is spent)."""
        bucket = self._clients.get(client)
        if bucket is None:
            bucket = TokenBucket(self._per_minute, self._burst, self._clock)
        self._clients[client] = bucket  # (re-inserted: remembered while active)
        if not bucket.available() or not self._global.take():
            return False
        return bucket.take()


class PerClient:
    """At most ``limit`` requests of one client at once (in flight or waiting)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: Only clients with requests under way: at most as many as requests.
        self._active: dict[str, int] = {}

    def enter(self, client: str) -> bool:
        count = self._active.get(client, 0)
        if count >= self.limit:
            return False
        self._active[client] = count + 1
        return True

    def leave(self, client: str) -> None:
        count = self._active.get(client, 0) - 1
        if count > 0:
            self._active[client] = count
        else:
            self._active.pop(client, None)

    def __len__(self) -> int:
        return len(self._active)
