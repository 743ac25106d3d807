"""The drift check: does the mirror, as the gateway serves it, equal upstream?

``patchwork-gateway check --config FILE [--sample N] [--resource R]... [--json]``
reads upstream's API (version 1.4, with the sync's token, through the same
polite client as the sync: its concurrency, time-outs and retries) and
compares every object it reads with the gateway's rendering of the
mirrored object: the gateway's own code (``gateway.api.render``), at the
latest version, with upstream's origin (learnt from its API index) in
place of the gateway's, so a field compares equal exactly when a client
of the gateway sees what a client of upstream sees, the origin aside.

Resources, as the mirror stores them: ``events`` (first), ``projects``,
``users``, ``people``, ``series``, ``covers``, ``patches``, ``bundles``,
then the per-parent lists ``patch_comments`` and ``checks`` (of patches)
and ``cover_comments`` (of covers).

The full check (the default) reads every page of every list
(``per_page=250``) and compares page by page: what it holds at a time is
one page and its mirrored counterparts, whatever the instance's size.
List pages show objects without their detail-only fields (a patch's
``headers``, ``content``, ``diff`` and ``prefixes``, a cover's ``headers``
and ``content``: the message, which does not change once received); those
are compared for any object whose detail the mirror lacks, and for the
objects of a sample.  Comments and checks are read per parent: every
parent the mirror holds any for, every parent upstream's events announce
some for, every parent the sync's own rule (``sync.crawler.needed_parents``)
says may have some, and 100 others at random, which tests that rule.  A
full check costs about the requests of an initial sync.

``--sample N`` checks N objects per resource: page 1 and N/250 (at least
one) other pages of each list, chosen at random, give upstream's ids in
the id ranges they cover, compared with the mirror's ids in the same
ranges (objects on one side only); then N ids, half drawn from the
mirror's and half from those upstream pages, are fetched in detail and
compared whole (an id upstream answers 404 for is gone upstream).  Events
have no detail URL: the newest pages down to the mirror's cursor (20 at
most) and N/250 others at random are compared item by item.
Comments and checks: the whole lists of N parents, half of them parents
the mirror holds some for.

Reported, by resource: objects **missing** from the mirror (upstream has
them), **extra** objects (the mirror has them, upstream no longer does, or
no longer shows them to the sync identity), and for objects on both sides
each **differing** field, by dotted path for nested values (``project.name``,
``series.0.name``), e.g. ``patches 12 state: mirror "new" upstream
"accepted"``.  Nothing is ignored silently; the rules:

1. Events newer than the mirror's cursor (the date of the newest event the
   sync has applied, which ``status`` shows) that the mirror lacks are
   listed as *newer than the mirror* and not counted: the sync reads the
   event log up to its cursor by design.  What such events announce is
   compared on the objects themselves, and counted.
2. A difference in an object that such an event names is counted, and
   marked *pending*: the sync worker applies it at its next poll.  On a
   mirror kept by ``run``, a change made upstream within the last poll
   interval (or, for changes Patchwork emits no event for, the last sweep
   interval) shows as a difference; right after ``sync --once`` there must
   be none.  Run the check again to tell lag from drift.
3. A user's ``settings``: Patchwork shows them to that user alone, and the
   gateway forwards that read upstream; never compared.
4. A resource upstream does not show the sync identity (people and users,
   without a token) is skipped, and listed as skipped: the gateway
   forwards its reads.
5. Upstream changing during the check can show a difference that is gone a
   moment later (an object deleted shifts a list under its pages): run the
   check again to confirm.

Exit status: 0 when there are no differences, 1 when there are, 2 on an
error (configuration, no mirror, upstream unreachable or refusing the
token), said in one line.

The package, by concern: ``engine`` (both sides, and comparing them),
``lists`` and ``events`` (which objects each walk compares), ``run`` (a
whole check, resource by resource), ``report`` (what it found) and
``text`` (the options, the report as text or JSON, the exit status).
"""

from cli.check.text import DESCRIPTION, add_arguments, main

__all__ = ["DESCRIPTION", "add_arguments", "main"]
