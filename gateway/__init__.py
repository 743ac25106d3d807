"""The gateway: serves Patchwork's REST API from the SQLite mirror."""
