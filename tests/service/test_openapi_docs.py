"""GET /docs: Swagger UI for the document, served by the service itself, loading nothing from elsewhere."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from werkzeug.serving import make_server


class Links(HTMLParser):
    """Every URL a page refers to in src= and href=."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def test_every_asset_of_the_page_is_served_by_the_service(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    links = Links()
    links.feed(page.get_data(as_text=True))
    assert len(links.urls) >= 3  # the stylesheet, the icon, the script
    for url in links.urls:
        assert not urlsplit(url).scheme and not urlsplit(url).netloc, f"{url} is not served by the service"
        asset = client.get(urljoin("http://localhost/docs", url))
        assert asset.status_code == 200 and len(asset.data) > 0, url
    assert 'url: "openapi.json"' in page.get_data(as_text=True)


def test_the_page_may_load_nothing_from_elsewhere(client):
    policy = client.get("/docs").headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert all("http" not in sources and "*" not in sources for sources in directives.values())


def test_only_the_files_of_the_page_are_served(client):
    assert client.get("/docs/index.html").status_code == 404  # the bundle's own page points elsewhere
    assert client.get("/docs/..%2F__init__.py").status_code == 404


@pytest.fixture
def live_url(app) -> Iterator[str]:
    """The app on a real socket on 127.0.0.1, for a browser."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


def test_the_page_renders_every_operation_in_a_browser_offline(live_url, client):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    operations = sum(len(item) for item in client.get("/openapi.json").get_json()["paths"].values())
    elsewhere, problems = [], []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda message: message.type == "error" and problems.append(message.text))
            page.on("pageerror", lambda error: problems.append(str(error)))

            def only_the_service(route):
                if route.request.url.startswith(live_url + "/"):
                    route.continue_()
                else:
                    elsewhere.append(route.request.url)
                    route.abort()

            page.route("**/*", only_the_service)
            page.goto(f"{live_url}/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            assert page.locator(".opblock").count() == operations
            assert "digit-serving" in page.locator(".info").inner_text()
        finally:
            browser.close()
    assert elsewhere == []
    assert problems == []
