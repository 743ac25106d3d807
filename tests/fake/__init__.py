"""A stateful fake Patchwork 3.x upstream, serving its API from memory.

The replay upstream (``tests.support.replay_upstream``) can only answer
what was recorded; sync tests also need an upstream that *changes*.  This
fake is seeded from the recorded crawl and then changed by the tests the
way Patchwork changes: new series, comments, checks, state and delegate
changes, relations, archiving, renames, deletions, with events where
Patchwork 3.x emits them and nowhere else.  It answers as the recorded
instance did, byte for byte, which ``tests/test_fake_patchwork.py``,
``tests/test_fake_writes.py`` and ``tests/test_fake_xmlrpc.py`` check.
Every request is kept, headers and body included, in
:attr:`FakePatchwork.received`.

By what it fakes (each module says where its rules come from):

- :mod:`.state`: the objects, ids, clock, events and identities, and the
  changes tests make (``patchwork/models.py``, ``patchwork/signals.py``);
- :mod:`.seed`: the instance a recorded crawl shows;
- :mod:`.api`: the REST API's versions, URL patterns, ``Allow`` headers
  and errors, shared by reads and writes;
- :mod:`.reads`: REST reads: rendering at every version, filters, search,
  orderings, pagination;
- :mod:`.writes`: REST writes: permissions, validation, changes;
- :mod:`.downloads`: mboxes and raw diffs;
- :mod:`.xmlrpc`: the XML-RPC API;
- :mod:`.server`: :class:`FakePatchwork`, which is all of the above, and
  its aiohttp application.

Left out: web pages (404; a download is served by ``GET`` and ``HEAD``
only), ``OPTIONS`` (a 405), ``Accept`` negotiation and the browsable
API, and SQLite's order of ties beyond the common cases (ties come out
by id, see :meth:`.reads.Reads._order`).
"""

from tests.fake.seed import CRAWL
from tests.fake.server import FakePatchwork, Received
from tests.fake.state import CIBOT, State

__all__ = ["CIBOT", "CRAWL", "FakePatchwork", "Received", "State"]
