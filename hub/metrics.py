"""Prometheus metrics of the hub (prometheus-client), correct with several worker processes.

`hub serve --workers N` runs N processes. Each keeps its metrics in files under
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode, set up by `hub serve` in a private
temporary folder before the workers start), and /metrics on any worker reports the sum over all of
them. One worker keeps them in memory. Labels hold only bounded, non-personal values: operation
names from the schema, error codes, actions, phases.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess,
)

# fixed when this module is first imported, as prometheus-client fixes its value storage then
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# request latencies from 1 ms to 30 s; lock waits and matcher phases from 0.1 ms
_REQUEST_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)
_FAST_BUCKETS = (.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)

HTTP_REQUESTS = Counter("hub_http_requests_total", "HTTP requests by route and status code", ["route", "status"])
HTTP_SECONDS = Histogram("hub_http_request_seconds", "HTTP request latency by route", ["route"],
                         buckets=_REQUEST_BUCKETS)
OPERATIONS = Counter("hub_graphql_operations_total",
                     "GraphQL operations by root field and outcome (OK or the first error's extensions.code)",
                     ["operation", "code"])
OPERATION_SECONDS = Histogram("hub_graphql_operation_seconds", "GraphQL operation latency by root field",
                              ["operation"], buckets=_REQUEST_BUCKETS)
REGISTRATIONS = Counter("hub_registrations_total", "Registered source records by action (CREATED, LINKED, ...)",
                        ["action"])
MATCH_SECONDS = Histogram("hub_match_seconds",
                          "Matcher time per registered batch: candidates (loading stored candidates), "
                          "place (scoring and placing the batch's records)", ["phase"], buckets=_FAST_BUCKETS)
LOCK_WAIT_SECONDS = Histogram("hub_write_lock_wait_seconds",
                              "Time a writing unit of work waits for the hub's write lock", buckets=_FAST_BUCKETS)
REVIEW_QUEUE = Gauge("hub_review_queue_size", "Match candidates waiting for a steward (PENDING)",
                     multiprocess_mode="mostrecent")
OUTBOX_LAG = Gauge("hub_outbox_lag_seconds", "Age of the oldest change event not yet published",
                   multiprocess_mode="mostrecent")
DRAINING = Gauge("hub_draining", "1 while this process finishes in-flight requests before it stops",
                 multiprocess_mode="max")


def exposition() -> tuple[bytes, str]:
    """The metrics of every worker process, in the Prometheus text format, and its content type."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


@contextmanager
def timed(histogram, **labels: str) -> Iterator[None]:
    """Observe the time the block takes in a histogram (with these labels)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        (histogram.labels(**labels) if labels else histogram).observe(time.perf_counter() - start)


def count_registrations(actions) -> None:
    """Count one registered batch's results by action."""
    counts: dict[str, int] = {}
    for action in actions:
        counts[action] = counts.get(action, 0) + 1
    for action, n in counts.items():
        REGISTRATIONS.labels(action=action).inc(n)


def observe_outbox_lag(seconds: float) -> None:
    """Report the age of the oldest unpublished change event (the outbox's publisher calls this)."""
    OUTBOX_LAG.set(max(0.0, seconds))


def worker_stopped(pid: int | None = None) -> None:
    """Drop a stopped worker's live gauges (multiprocess mode); its counters keep counting in the sums."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(pid or os.getpid())
