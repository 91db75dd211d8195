"""The HTTP edge: v1 REST routes, pages, health and metrics over the engine's interface.

It maps requests to engine calls and domain errors to statuses; it touches no store.
"""
