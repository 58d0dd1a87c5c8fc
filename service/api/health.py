"""Liveness and readiness for orchestrators (Kubernetes probes, load balancers).

GET /healthz  200 while the worker can answer at all.
GET /readyz   200 when every model in the repository has a loaded version, 503 otherwise
              (naming the models that have none and why); 503 too when the repository is empty.
"""

from __future__ import annotations

from flask import Blueprint

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
    missing = registry().not_ready()
    if missing:
        return render(Readiness(status="not_ready", models=serving, not_ready=missing), 503)
    return render(Readiness(status="ready", models=serving))
