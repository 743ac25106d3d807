"""The control file: the worker's status and a webhook queue bounded in bytes."""

from __future__ import annotations

from mirror import control
from mirror.control import Control


def test_webhook_queue_is_bounded_in_bytes_and_remembers_deliveries(tmp_path, monkeypatch):
    monkeypatch.setattr(control, "MAX_PENDING_BYTES", 10_000)
    queue = Control(tmp_path / "m.sqlite3")
    try:
        body = b"x" * 4_000
        assert queue.enqueue_webhook("event:1", body) is True
        assert queue.enqueue_webhook("event:2", body) is True
        assert queue.enqueue_webhook("event:3", body) is None  # 12,000 bytes waiting: no
        assert queue.enqueue_webhook("event:1", body) is False  # a replay, full or not
        pending = queue.pending_webhooks()
        assert [bytes(b) for _, b in pending] == [body, body]

        queue.webhooks_done([seq for seq, _ in pending])
        assert queue.pending_webhooks() == []
        assert queue.enqueue_webhook("event:3", body) is True  # handled ones keep no body
        assert queue.enqueue_webhook("event:2", body) is False  # still known: a replay
    finally:
        queue.close()


def test_status_values_round_trip(tmp_path):
    status = Control(tmp_path / "m.sqlite3")
    try:
        status.set_status(state="following", last_error=None, cursor="2026-01-01T00:00:00")
        status.set_status(state="retrying")
        assert status.status() == {
            "state": "retrying",
            "last_error": None,
            "cursor": "2026-01-01T00:00:00",
        }
    finally:
        status.close()
