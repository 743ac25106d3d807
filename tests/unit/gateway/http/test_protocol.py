"""The one method of aiohttp the server replaces (gateway.http.protocol):
still there, still taking what it took, and answering short."""

from __future__ import annotations

import inspect

from aiohttp import web_protocol

from gateway.http import protocol


def test_what_is_replaced_is_still_aiohttps_own_with_the_same_parameters():
    assert tuple(inspect.signature(protocol.REPLACED).parameters) == protocol.PARAMETERS
    assert protocol.REPLACED.__qualname__ == "RequestHandler.handle_error"


def test_installing_is_idempotent_and_replaces_only_that_method():
    before = dict(vars(web_protocol.RequestHandler))
    protocol.install()
    protocol.install()
    after = dict(vars(web_protocol.RequestHandler))
    changed = {name for name in after if after[name] is not before.get(name)}
    assert changed <= {"handle_error"}
    assert web_protocol.RequestHandler.handle_error is protocol._handle_error
