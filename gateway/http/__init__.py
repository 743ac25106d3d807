"""The HTTP pipeline: the application, the steps every request takes, delivery,
negotiation, bounds, the cache of answers."""
