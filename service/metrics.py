"""Prometheus metrics, correct across gunicorn workers.

When PROMETHEUS_MULTIPROC_DIR is set (gunicorn.conf.py sets it before any worker starts), every
worker writes its values to files there and ``render`` merges them, so a scrape that lands on any
worker sees the whole service.  Without it (tests, a single process) the default registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess, values

from service import lifecycle

# In multiprocess mode every update checks whether the process has forked: by the process id
# that service.lifecycle keeps, not by a system call per update.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    values.ValueClass = values.MultiProcessValue(lifecycle.process_id)

REQUESTS = Counter(
    "serving_requests", "HTTP requests by endpoint, model and status", ["endpoint", "model", "status"]
)
REQUEST_LATENCY = Histogram(
    "serving_request_duration_seconds", "Time from request to response", ["endpoint"]
)
INFERENCE_TIME = Histogram(
    "serving_inference_duration_seconds",
    "Time spent inside onnxruntime per batch",
    ["model"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
IMAGES_PER_REQUEST = Histogram(
    "serving_images_per_request", "Images in one /predict request", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
# livemax: the highest version any live worker serves; a dead worker's value is dropped.
MODEL_VERSION = Gauge(
    "serving_model_version", "Version of each model being served", ["model"], multiprocess_mode="livemax"
)
# Answered by the gunicorn worker itself (service.worker), before the application saw them.
SHED_REQUESTS = Counter(
    "serving_shed_requests",
    "Requests answered 503 + Retry-After because the worker's queue was full (queue_full) or they "
    "waited in it too long (queue_wait)",
    ["reason"],
)
REFUSED_REQUESTS = Counter(
    "serving_refused_requests",
    "Requests refused while being read: too slow (read_timeout, 408), too large (too_large, 413; "
    "headers_too_large, 414/431), unframeable (bad_framing, 400/501), not HTTP (bad_request, 400)",
    ["reason"],
)
# Sampled by each worker a few times a second; summed over the live workers.
QUEUED_REQUESTS = Gauge(
    "serving_queued_requests", "Complete requests waiting for their turn", multiprocess_mode="livesum"
)
OPEN_CONNECTIONS = Gauge(
    "serving_open_connections", "Client connections held by the workers", multiprocess_mode="livesum"
)
MODEL_LOAD_FAILURES = Counter(
    "serving_model_load_failures",
    "Model versions refused at start-up or on refresh (invalid manifest, checksum, graph, signature)",
    ["model", "phase"],
)


_children: dict[tuple, object] = {}


def labelled(metric, *label_values):
    """``metric.labels(*label_values)``, looked up once: labels() takes a lock and checks its
    arguments on every call.  For values from bounded sets (URL rules, model names, status codes)."""
    child = _children.get((metric, label_values))
    if child is None:
        child = _children[metric, label_values] = metric.labels(*label_values)
    return child


def forget_model(name: str) -> None:
    try:
        MODEL_VERSION.remove(name)
    except KeyError:  # never loaded in this process
        pass


def render() -> tuple[bytes, str]:
    """The exposition text for a scrape, merged across workers when in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
