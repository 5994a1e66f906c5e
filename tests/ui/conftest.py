"""The Management UI in headless Chromium (Debian's `chromium`, driven by Playwright), against a
whole in-process gateway and the TikTok double.

Reuses the browser tag's fixtures (tests/browser/conftest.py): no browser is ever downloaded;
without Chromium or Playwright these tests skip with the reason, and fail instead under
GATEWAY_TEST_REQUIRE_SERVICES=1 (as CI runs them).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import chromium, launch_chromium  # noqa: F401  (a fixture)
from tests.conftest import ADMIN_TOKEN, Gateway, MakeGateway
from tests.tiktok_double import TikTokDouble

if TYPE_CHECKING:
    from playwright.async_api import BrowserType, Page

DOCS = Path(__file__).parents[2] / "docs"
LAPTOP = {"width": 1440, "height": 900}


@dataclass
class Console:
    """The admin's browser tab on the gateway's admin port."""

    gw: Gateway
    tiktok: TikTokDouble
    page: Page
    errors: list[str]
    shots_dir: Path
    # Console errors a test provokes on purpose (the browser logs every 4xx answer as one).
    expected: list[str] = field(default_factory=list)

    def expect_console_error(self, text: str) -> None:
        self.expected.append(text)

    @property
    def url(self) -> str:
        return str(self.gw.admin.make_url("/"))

    async def open(self) -> None:
        await self.page.goto(self.url)

    async def sign_in(self, token: str = ADMIN_TOKEN) -> None:
        await self.open()
        await self.page.get_by_label("Admin token").fill(token)
        await self.page.get_by_role("button", name="Sign in").click()
        if token == ADMIN_TOKEN:
            await self.page.get_by_role("heading", name="Integrations").wait_for()

    async def go(self, hash_route: str) -> None:
        await self.page.evaluate("route => { location.hash = route }", hash_route)

    async def screenshot(self, name: str) -> None:
        """Take the screen; with GATEWAY_TEST_SCREENSHOTS=1 (`make screenshots`) save it into
        docs/, which the README shows. Otherwise it goes to a temporary file, so an ordinary
        test run leaves the work tree clean (the screens show timestamps, so they always differ).
        """
        target = DOCS if os.environ.get("GATEWAY_TEST_SCREENSHOTS") == "1" else self.shots_dir
        await self.page.screenshot(path=str(target / name), full_page=False)


@pytest.fixture
async def console(
    chromium: BrowserType,  # noqa: F811  (the imported fixture)
    make_gateway: MakeGateway,
    tiktok: TikTokDouble,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Console]:
    browser = await launch_chromium(chromium)
    try:
        marker = request.node.get_closest_marker("gateway_settings")
        async with make_gateway(**(marker.kwargs if marker else {})) as gw:
            context = await browser.new_context(viewport=LAPTOP, locale="en-US", timezone_id="UTC")
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            # A console error fails the test too (a refused request the UI did not handle, a
            # CSP violation, a failed module load), unless the test expects it (`expected`).
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.set_default_timeout(10_000)
            try:
                console = Console(gw, tiktok, page, errors, tmp_path)
                yield console
            finally:
                await context.close()
            unexpected = [e for e in errors if not any(x in e for x in console.expected)]
            assert unexpected == [], "the UI threw or logged a console error"
    finally:
        await browser.close()
