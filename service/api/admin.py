"""State-changing endpoints, registered only when ADMIN_TOKEN is set.

POST /admin/refresh  rescan the repository now (this worker; the others poll on their own)
                     and answer the served versions.  Requires ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, request

from service.api import config, registry
from service.api.bodies import render
from service.errors import Unauthorized
from service.schemas import Refreshed

blueprint = Blueprint("admin", __name__, url_prefix="/admin")


@blueprint.before_request
def require_token():
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = config().admin_token or ""
    # compare_digest takes the same time whatever the mismatch, so the token cannot be guessed
    # byte by byte from response times.
    if scheme.lower() != "bearer" or not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("this endpoint needs Authorization: Bearer <ADMIN_TOKEN>")


@blueprint.post("/refresh")
def refresh():
    registry().refresh()
    return render(
        Refreshed(models={name: state.served.number if state.served else None for name, state in registry().states().items()})
    )
