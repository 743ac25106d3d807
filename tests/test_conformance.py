"""Every anonymous recorded case, replayed against the gateway."""

from __future__ import annotations

import pytest

from tests.conformance import ask, cases, differences

ANONYMOUS = cases(None)


def _id(case: dict) -> str:
    return f"{case['family']}:{case['method']}:{case['path']}"


@pytest.mark.parametrize("case", ANONYMOUS, ids=[_id(c) for c in ANONYMOUS])
def test_anonymous_case(deployment, case):
    reply, origin, error = ask(case, deployment.gateway, deployment.upstream)
    assert error is None, error
    assert differences(case, reply, origin) == []
