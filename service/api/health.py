"""Liveness and readiness for orchestrators (Kubernetes probes, load balancers).

GET /healthz  200 while the worker can answer at all.
GET /readyz   200 when every model in the repository has a loaded version, 503 otherwise
              (naming the models that have none and why); 503 too when the repository is empty,
              and from the moment the worker starts draining (SIGTERM) until it exits.

Under gunicorn both are answered by the worker's event loop as soon as they are read, never
behind inference requests (service.worker), so a busy pod is not taken for a dead one.
"""

from __future__ import annotations

from flask import Blueprint

from service import lifecycle
from service.api import registry
from service.api.bodies import render
from service.schemas import Liveness, Readiness

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def alive():
    return render(Liveness(status="alive"))


@blueprint.get("/readyz")
def ready():
    states = registry().states()
    serving = {name: state.served.number for name, state in states.items() if state.served}
    if lifecycle.draining():
        return render(Readiness(status="draining", models=serving), 503)
    missing = registry().not_ready()
    if missing:
        return render(Readiness(status="not_ready", models=serving, not_ready=missing), 503)
    return render(Readiness(status="ready", models=serving))
