"""GET /: the drawing page, and /static/ for its script and stylesheet (service/static/).

The page is plain HTML, one script and one stylesheet, with no build step and nothing fetched
from elsewhere: it talks only to this service's ``/predict`` and ``/readyz``.  Its Content
Security Policy says so, so a browser refuses anything else the page might try to load.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, send_from_directory

STATIC = Path(__file__).resolve().parent.parent / "static"
# Same origin only; the model's picture arrives as a data: URL inside the /predict answer.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

blueprint = Blueprint("page", __name__, static_folder=STATIC, static_url_path="/static")


@blueprint.get("/")
def drawing_page():
    response = send_from_directory(STATIC, "index.html", max_age=0)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response
