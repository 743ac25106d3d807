"""Every recorded conformance case, replayed against the gateway.

Anonymous reads are answered by the mirror; reads with credentials are
forwarded to the (replayed) upstream with the caller's own credentials.
"""

from __future__ import annotations

import pytest

from tests.conformance import ask, cases, differences

ALL = cases()
ANONYMOUS = [c for c in ALL if c["auth"] is None]
IDENTIFIED = [c for c in ALL if c["auth"] is not None]


def _id(case: dict) -> str:
    return f"{case['family']}:{case['method']}:{case['path']}"


@pytest.mark.parametrize("case", ANONYMOUS, ids=[_id(c) for c in ANONYMOUS])
def test_anonymous_case(deployment, case):
    reply, origin, error = ask(case, deployment.gateway, deployment.upstream)
    assert error is None, error
    assert differences(case, reply, origin) == []


@pytest.mark.parametrize("case", IDENTIFIED, ids=[f"{c['auth']}:{_id(c)}" for c in IDENTIFIED])
def test_identified_case(deployment, case):
    reply, origin, error = ask(case, deployment.gateway, deployment.upstream)
    assert error is None, error
    assert differences(case, reply, origin) == []
