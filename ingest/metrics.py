"""Prometheus metrics of the ingest worker, served on ``CALLVAULT_INGEST_METRICS_PORT``.

Labels are outcomes and reason codes only: never a tenant's caller, never a number.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

REGISTRY = CollectorRegistry()

CONSUMED = Counter("callvault_ingest_consumed_total", "Messages taken from the recordings topic",
                   registry=REGISTRY)
OUTCOMES = Counter("callvault_ingest_outcomes_total", "Calls by outcome (stored, duplicate, suppressed...)",
                   ["outcome"], registry=REGISTRY)
REJECTED = Counter("callvault_ingest_rejected_total", "Messages dead-lettered, by reason code",
                   ["code"], registry=REGISTRY)
REJECTED.labels("tenant_mismatch")  # shown at 0: a producer writing another tenant's calls is an alert
RETRIES = Counter("callvault_ingest_retries_total", "Transient failures retried, by error type",
                  ["error"], registry=REGISTRY)
LATENCY = Histogram("callvault_ingest_processing_seconds", "Time from taking a message to its outcome",
                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=REGISTRY)
PRODUCE_TO_STORED = Histogram("callvault_ingest_produce_to_stored_seconds",
                              "From the Kafka timestamp of a message to its stored event",
                              buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300), registry=REGISTRY)


def serve(port: int, host: str = "127.0.0.1") -> None:
    if port:
        start_http_server(port, addr=host, registry=REGISTRY)
