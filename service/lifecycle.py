"""Whether this process is serving or draining before it exits.

The gunicorn worker (service.worker) calls ``begin_draining`` as soon as it gets SIGTERM;
readiness (service.api.health) then answers 503, so that load balancers stop sending, while
the requests already received are still answered.  Imports nothing heavy: the worker module
that uses it is loaded in the gunicorn master.
"""

from __future__ import annotations

import threading

_draining = threading.Event()


def begin_draining() -> None:
    _draining.set()


def draining() -> bool:
    return _draining.is_set()
