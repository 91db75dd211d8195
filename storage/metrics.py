"""Prometheus metrics of the storage layer."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["BATCH_SIZE", "BRIDGE_CROSSINGS", "ROUND_TRIPS"]

ROUND_TRIPS = Counter(
    "booking_storage_round_trips_total",
    "Network round trips to a storage server.",
    ["backend", "op"],
)
BRIDGE_CROSSINGS = Counter(
    "booking_bridge_crossings_total",
    "Calls that crossed from the app's loop into the drivers' loop.",
)
BATCH_SIZE = Histogram(
    "booking_batch_size",
    "Requests served by one storage round trip.",
    ["op"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
