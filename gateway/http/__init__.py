"""The HTTP pipeline: the application, its middlewares, delivery,
negotiation, bounds, the cache of answers."""
