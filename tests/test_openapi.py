"""The API's OpenAPI description, generated from the resource descriptions,
checked by schemathesis against the gateway itself, every version."""

from __future__ import annotations

import json

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from mirror.versions import VERSIONS
from tests.support import request


def test_every_endpoint_answers_as_described(deployment):
    """schemathesis generates requests for every operation of every version
    from the description, and checks each answer against it."""
    schema = schemathesis.openapi.from_url(deployment.gateway + "/api/docs/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 100
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=6,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            # (A well-formed cursor of no log of ours, the likely one drawn,
            # is gone: a documented 410, not an acceptance.)
            feed = case.operation.path == "/_gateway/changes"
            if feed and case.query and "wait" in case.query:
                case.query["wait"] = min(float(case.query["wait"]), 0.5)  # (held that long)
            case.call_and_validate(excluded_checks=[positive_data_acceptance] if feed else [])

        check()


def test_the_description_covers_every_version_and_is_readable(deployment):
    reply = request("GET", deployment.gateway + "/api/docs/openapi.json")
    assert reply.status == 200
    spec = json.loads(reply.body)
    assert spec["openapi"].startswith("3.1")
    for version in (*VERSIONS, None):
        base = f"/api/{version}/" if version else "/api/"
        assert base + "patches/" in spec["paths"]
        assert base + "patches/{id}/" in spec["paths"]
    # Comment details exist from 1.3 only, as upstream routes them.
    assert "/api/1.2/patches/{patch_id}/comments/{id}/" not in spec["paths"]
    assert "/api/1.3/patches/{patch_id}/comments/{id}/" in spec["paths"]
    hash_filter = [
        p for p in spec["paths"]["/api/1.2/patches/"]["get"]["parameters"] if p["name"] == "hash"
    ]
    assert hash_filter, "filters appear from the version that has them"
    assert not [
        p for p in spec["paths"]["/api/1.1/patches/"]["get"]["parameters"] if p["name"] == "hash"
    ]
    page = request("GET", deployment.gateway + "/api/docs/")
    assert page.status == 200
    assert b"/api/1.4/patches/{id}/" in page.body
    assert b"<script" not in page.body
    moved = request("GET", deployment.gateway + "/api/docs")
    assert moved.status == 301
