"""gunicorn settings for the service: ``python -m gunicorn -c gunicorn.conf.py "service:create_app()"``.

Environment: PORT (8000), HOST (0.0.0.0), WORKERS (CPUs available), WORKER_THREADS (2),
TIMEOUT (30 s), LOG_LEVEL (INFO), PROMETHEUS_MULTIPROC_DIR (a fresh temporary folder), plus the
service's own variables (service/config.py; the worker reads its queue and timeout settings
there too).

Every variable is checked here, once, in the master: a bad value ends start-up with one line
naming it and what it accepts (exit status 2), before any worker starts and fails on its own.

Models are loaded in each worker after the fork (the app is not preloaded): an onnxruntime
session inherited across a fork can crash when it is destroyed.
"""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

from service.config import ConfigError, ServiceConfig, check_model_repository, choice_variable, integer_variable

try:
    service_config = ServiceConfig.from_env()
    repository_warning = check_model_repository(service_config.model_repository)
    port = integer_variable("PORT", 8000, minimum=1, maximum=65535)
    worker_threads = integer_variable("WORKER_THREADS", 2)
    worker_timeout = integer_variable("TIMEOUT", 30)
    log_level = choice_variable("LOG_LEVEL", "info", ["debug", "info", "warning", "error", "critical"])
except ConfigError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)

# prometheus_client picks single- or multi-process mode when it is first imported, so the
# folder must be in the environment before the service (and prometheus_client) is imported.
# A folder made here is removed when the master exits; one given by the caller is kept.
created_metrics_folder = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    created_metrics_folder = tempfile.mkdtemp(prefix="prometheus-multiproc-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = created_metrics_folder
master_pid = os.getpid()


def remove_created_metrics_folder():
    # Workers are forked from the master and inherit this hook: only the master removes it.
    if created_metrics_folder and os.getpid() == master_pid:
        shutil.rmtree(created_metrics_folder, ignore_errors=True)


atexit.register(remove_created_metrics_folder)

from prometheus_client import multiprocess  # noqa: E402

from service.logs import logging_config  # noqa: E402

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{port}"
workers = service_config.workers
# The service's own worker (service/worker.py): a buffering event loop in front of the app,
# health answered between inference requests, a bounded queue with 503 + Retry-After beyond it,
# kept-alive connections balanced over the workers.  bench/README.md has the measurements.
worker_class = "service.worker.ServingWorker"
# Inference requests a worker runs at once (its request threads); health, readiness and other
# GET requests run on the worker's event loop and never wait for these.
threads = worker_threads
# Open connections per worker (idle kept-alive ones included); a slow client costs one of them.
worker_connections = 1000
timeout = worker_timeout
graceful_timeout = 30
keepalive = 5
preload_app = False
# gunicornc's control socket can resize or reload the service: not without our admin token.
control_socket_disable = True

loglevel = log_level
logconfig_dict = logging_config(loglevel.upper())
# gunicorn's logger, minus the access-log fields its own workers (--worker-class=gthread or sync,
# as bench/ runs them) would build and drop for every request; service.worker builds none.
logger_class = "service.logs.GunicornLogger"
accesslog = None  # the service logs each request itself, with model and version


def on_starting(server):
    global master_pid
    master_pid = os.getpid()  # after --daemon has forked
    if server.cfg.preload_app:
        raise RuntimeError("do not preload this app: onnxruntime sessions must not cross a fork")
    if repository_warning:
        server.log.warning(repository_warning)
    # The service splits the CPUs among the workers; tell it the number actually used (-w wins).
    os.environ["WORKERS"] = str(server.cfg.workers)
    # Values left by an earlier run would be added to this one's.
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    # Drop the dead worker's live gauges (served versions) from the merged metrics.
    multiprocess.mark_process_dead(worker.pid)
