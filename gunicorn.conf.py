"""gunicorn settings for the service: ``python -m gunicorn -c gunicorn.conf.py "service:create_app()"``.

Environment: PORT (8000), HOST (0.0.0.0), WORKERS (CPUs available), WORKER_THREADS (2),
TIMEOUT (30 s), LOG_LEVEL (INFO), PROMETHEUS_MULTIPROC_DIR (a fresh temporary folder), plus the
service's own variables (service/config.py; the worker reads its queue and timeout settings
there too).

Models are loaded in each worker after the fork (the app is not preloaded): an onnxruntime
session inherited across a fork can crash when it is destroyed.
"""

import os
import tempfile
from pathlib import Path

# prometheus_client picks single- or multi-process mode when it is first imported, so the
# folder must be in the environment before the service (and prometheus_client) is imported.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prometheus-multiproc-")

from prometheus_client import multiprocess  # noqa: E402

from service.config import available_cpus  # noqa: E402
from service.logs import logging_config  # noqa: E402

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WORKERS") or available_cpus())
# The service's own worker (service/worker.py): a buffering event loop in front of the app,
# health answered between inference requests, a bounded queue with 503 + Retry-After beyond it,
# kept-alive connections balanced over the workers.  bench/README.md has the measurements.
worker_class = "service.worker.ServingWorker"
# Inference requests a worker runs at once (its request threads); health, readiness and other
# GET requests run on the worker's event loop and never wait for these.
threads = int(os.environ.get("WORKER_THREADS") or 2)
# Open connections per worker (idle kept-alive ones included); a slow client costs one of them.
worker_connections = 1000
timeout = int(os.environ.get("TIMEOUT") or 30)
graceful_timeout = 30
keepalive = 5
preload_app = False
# gunicornc's control socket can resize or reload the service: not without our admin token.
control_socket_disable = True

loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()
logconfig_dict = logging_config(loglevel.upper())
accesslog = None  # the service logs each request itself, with model and version


def on_starting(server):
    if server.cfg.preload_app:
        raise RuntimeError("do not preload this app: onnxruntime sessions must not cross a fork")
    # The service splits the CPUs among the workers; tell it the number actually used (-w wins).
    os.environ["WORKERS"] = str(server.cfg.workers)
    # Values left by an earlier run would be added to this one's.
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    # Drop the dead worker's live gauges (served versions) from the merged metrics.
    multiprocess.mark_process_dead(worker.pid)
