"""The sync worker: crawls an upstream Patchwork into the SQLite mirror."""
