"""Patchwork's REST API read from the mirror: routing, answers, rendering,
pages of a list, OpenAPI, the browsable pages."""
