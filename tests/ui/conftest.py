"""The Management UI in headless Chromium (Debian's `chromium`, driven by Playwright), against a
whole in-process gateway and the TikTok double.

Reuses the browser tag's fixtures (tests/browser/conftest.py): no browser is ever downloaded;
without Chromium or Playwright these tests skip with the reason, and fail instead under
GATEWAY_TEST_REQUIRE_SERVICES=1 (as CI runs them).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
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
) -> AsyncIterator[Console]:
    browser = await launch_chromium(chromium)
    try:
        async with make_gateway() as gw:
            context = await browser.new_context(viewport=LAPTOP, locale="en-US", timezone_id="UTC")
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.set_default_timeout(10_000)
            try:
                yield Console(gw, tiktok, page, errors, tmp_path)
            finally:
                await context.close()
            assert errors == [], "the UI threw"
    finally:
        await browser.close()
