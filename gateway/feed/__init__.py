"""The change feed (``/_gateway/changes``): what changed in the mirror since
a cursor, for bots and replicas; read (gateway.feed.changes), then
answered, held or streamed (gateway.feed.endpoint)."""
