"""Helpers for the browser tests: chromium's settings and what a page recorded.

The server is the session-wide gunicorn of tests/conftest.py (tests/live_server.py) on 127.0.0.1
with the committed models; the browser is /usr/bin/chromium (apt), headless, with every background
service that could reach the network turned off.  Playwright never downloads a browser here.
Every page records its console errors, uncaught exceptions and the requests it makes, and
refuses any request that is not to the loopback server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # runs as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = "127.0.0.1"


@dataclass
class Recorded:
    """What one page did that a user would not see: console errors, exceptions, requests."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def check_clean(recorded: Recorded, allowed_errors: tuple[str, ...] = ()) -> None:
    unexpected = [error for error in recorded.console_errors if not any(a in error for a in allowed_errors)]
    assert unexpected == [], unexpected
    assert recorded.page_errors == []
    assert recorded.refused == []
    off_loopback = [url for url in recorded.requests if not url.startswith("data:") and urlsplit(url).hostname != LOOPBACK]
    assert off_loopback == []


def open_page(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200
    assert response.headers["content-type"].startswith("text/html")
