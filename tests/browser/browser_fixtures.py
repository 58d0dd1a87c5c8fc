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
