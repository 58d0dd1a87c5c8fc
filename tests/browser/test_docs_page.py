"""GET /docs in a real browser: Swagger UI renders every documented operation, offline."""

from __future__ import annotations

import requests
from browser_fixtures import Recorded, check_clean, open_page
from playwright.sync_api import Page


def test_the_docs_page_renders_every_operation_offline(page: Page, server: str, recorded: Recorded):
    document = requests.get(f"{server}/openapi.json", timeout=30).json()
    operations = sum(len(item) for item in document["paths"].values())
    open_page(page, f"{server}/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert page.locator(".opblock").count() == operations
    assert "digit-serving" in page.locator(".info").inner_text()
    check_clean(recorded)
