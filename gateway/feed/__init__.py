"""For bots and replicas: the change feed (``/_gateway/changes``: what
changed in the mirror since a cursor, read by gateway.feed.changes, then
answered, held or streamed by gateway.feed.endpoint) and snapshots
(``/_gateway/snapshot``: gateway.feed.snapshot)."""
