"""GET /docs: Swagger UI for the document, served by the service itself, loading nothing from elsewhere
(tests/browser/test_docs_page.py renders it in a real browser)."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit



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
