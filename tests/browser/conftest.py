"""Fixtures: the session's gunicorn (tests/conftest.py), headless chromium, recorded pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from browser_fixtures import CHROMIUM, CHROMIUM_ARGS, LOOPBACK, Recorded
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route, sync_playwright


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="session")
def server(live_server) -> str:
    return live_server.url


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: apt-get install chromium (.ci/run does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


@pytest.fixture
def page(browser: Browser, recorded: Recorded) -> Iterator[Page]:
    """A page at device pixel ratio 2, with a touch screen, that may reach the loopback server only."""
    context = browser.new_context(viewport={"width": 1000, "height": 820}, device_scale_factor=2, has_touch=True)

    def only_loopback(route: Route, request: Request) -> None:
        if urlsplit(request.url).hostname == LOOPBACK:
            route.continue_()
        else:
            recorded.refused.append(request.url)
            route.abort()

    context.route("**/*", only_loopback)
    opened = context.new_page()
    opened.on("console", lambda message: _record_console(message, recorded))
    opened.on("pageerror", lambda error: recorded.page_errors.append(str(error)))
    opened.on("request", lambda request: recorded.requests.append(request.url))
    yield opened
    context.close()


def _record_console(message: ConsoleMessage, recorded: Recorded) -> None:
    if message.type == "error":
        recorded.console_errors.append(f"{message.text} ({message.location.get('url', '')})")
