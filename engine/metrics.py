"""Prometheus metrics of the engine (event ids are the only labels: a handful per deployment)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ACTIVE_HOLDS",
    "ADMISSIONS",
    "ADMISSIONS_PACED",
    "BOOKINGS",
    "CANCELLATIONS",
    "CHECKINS",
    "DELIVERY_BACKLOG",
    "HOLDS_EXPIRED",
    "LOG_ENTRIES_RELAYED",
    "MAILS",
    "PAYMENTS",
    "PAYMENT_LATENCY",
    "PROJECTED",
    "PROJECTION_DELAY",
    "PROJECTION_LAG_ENTRIES",
    "PROJECTION_LAG_SECONDS",
    "QUEUE_LENGTH",
    "REFUNDED",
    "RELAY_LAG",
    "REVENUE",
    "SOLD_OUT",
    "STORE_UP",
    "SWEEP_LAG",
    "WEBHOOK_DELIVERIES",
]

QUEUE_LENGTH = Gauge("booking_queue_length", "Clients waiting in line.", ["event"])
ACTIVE_HOLDS = Gauge(
    "booking_active_holds", "Holds open (admitted, not yet paid or expired).", ["event"]
)
ADMISSIONS = Counter(
    "booking_admissions_total", "Clients admitted: seats held for them.", ["event"]
)
DELIVERY_BACKLOG = Gauge(
    "booking_delivery_backlog",
    "Prompts the realtime servers had yet to deliver, as admission last counted them.",
    ["event"],
)
ADMISSIONS_PACED = Counter(
    "booking_admissions_paced_total",
    "Admission calls stopped by the delivery backlog's bound (the clients wait for the "
    "servers to deliver the prompts before theirs).",
    ["event"],
)
SOLD_OUT = Counter("booking_sold_out_total", "Clients told nothing is left.", ["event"])
HOLDS_EXPIRED = Counter("booking_holds_expired_total", "Holds released unpaid.", ["event"])
BOOKINGS = Counter("booking_bookings_total", "Bookings made durable.", ["event"])
#: In the engine's money unit (an event has one currency; prices are integer cents).
REVENUE = Counter(
    "booking_revenue_cents",
    "Amount of the bookings made durable, in cents.",
    ["event"],
)
CANCELLATIONS = Counter(
    "booking_cancellations_total",
    "Cancellation attempts by result: refunded, retry (the gateway could not refund yet), "
    "refused (the gateway refused for good).",
    ["result"],
)
#: Refunds made by cancellations, in cents, like REVENUE.
REFUNDED = Counter(
    "booking_refunded_cents",
    "Amount refunded by cancellations, in cents.",
    ["event"],
)
#: result: admitted, already_in, cancelled, cancelling (a cancellation pending), unknown (scans with a refused key are not counted).
CHECKINS = Counter(
    "booking_checkins_total", "Tickets scanned at the door, by result.", ["event", "result"]
)
MAILS = Counter(
    "booking_mails_total", "Confirmation mail attempts by result (sent, retried).", ["result"]
)
PAYMENTS = Counter("booking_payments_total", "Payment attempts by result.", ["result"])
PAYMENT_LATENCY = Histogram(
    "booking_payment_seconds",
    "Time to answer a payment request.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
#: A hold is released late when its sweep runs late: the process or Redis kept it waiting.
SWEEP_LAG = Histogram(
    "booking_sweep_lag_seconds",
    "How long after it was due each expiry sweep call returned.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
#: Set by every process's store probe (engine/health.py): what /readyz would answer, per store.
STORE_UP = Gauge(
    "booking_store_up",
    "1 when the store answered this process's last probe, else 0.",
    ["store"],
)

RELAY_LAG = Gauge(
    "booking_relay_lag_seconds",
    "Age of the oldest event log entry not yet published by the relay (0: none waits).",
)
LOG_ENTRIES_RELAYED = Counter(
    "booking_log_entries_relayed_total", "Event log entries published to the Redis streams."
)
WEBHOOK_DELIVERIES = Counter(
    "booking_webhook_deliveries_total",
    "Event log entries sent to webhooks, by result (delivered; failed, to be tried again; "
    "dead: the last attempt). A batched webhook's POST counts each entry it carries.",
    ["result"],
)

PROJECTION_LAG_ENTRIES = Gauge(
    "booking_projection_lag_entries",
    "Event log entries written but not yet applied to the read models, over every event.",
)
PROJECTION_LAG_SECONDS = Gauge(
    "booking_projection_lag_seconds",
    "Age of the oldest event log entry not yet applied to the read models (0: none waits).",
)
PROJECTION_DELAY = Histogram(
    "booking_projection_delay_seconds",
    "From an entry's writing to its application to the read models, per entry applied.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PROJECTED = Counter(
    "booking_projected_entries_total", "Event log entries applied to the read models."
)
