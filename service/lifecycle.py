"""Whether this process is serving or draining before it exits, and which process it is.

The gunicorn worker (service.worker) calls ``begin_draining`` as soon as it gets SIGTERM;
readiness (service.api.health) then answers 503, so that load balancers stop sending, while
the requests already received are still answered.  Imports nothing heavy: the worker module
that uses it is loaded in the gunicorn master.
"""

from __future__ import annotations

import os
import threading

_draining = threading.Event()
# os.getpid() is a system call, and the request path asks for the process id several times (each
# Prometheus update checks for a fork, the model registry too).  This answers without one: the
# value is renewed in every forked child.
_process_id = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _process_id.__setitem__(0, os.getpid()))


def process_id() -> int:
    return _process_id[0]


def begin_draining() -> None:
    _draining.set()


def draining() -> bool:
    return _draining.is_set()
