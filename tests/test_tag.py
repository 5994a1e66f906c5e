"""The tag and the demo shop as the collection port serves them (the browser tests drive them)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from tests.conftest import Gateway

STATIC = Path(__file__).parents[1] / "gateway" / "static"
# The budget for the tag, gzipped as a server or CDN sends it.
TAG_GZIP_BUDGET = 3 * 1024
STUB_RE = re.compile(r"<script>(window\._df=.*?)</script>")


async def test_tag_is_served_as_javascript(gateway: Gateway) -> None:
    resp = await gateway.collect.get("/df.js")
    assert resp.status == 200
    assert resp.content_type == "application/javascript"
    assert "max-age" in resp.headers["Cache-Control"]
    assert await resp.read() == (STATIC / "df.js").read_bytes()


def test_tag_stays_small() -> None:
    source = (STATIC / "df.js").read_bytes()
    assert len(gzip.compress(source, compresslevel=9)) < TAG_GZIP_BUDGET


def test_tag_needs_nothing_else() -> None:
    source = (STATIC / "df.js").read_text()
    assert not re.search(r"\b(import|require)\s*\(", source)
    # It keeps no ids itself (the gateway's cookies do), so blocked storage cannot break it.
    for storage in ("document.cookie", "localStorage", "sessionStorage"):
        assert storage not in source


async def test_demo_page_installs_the_documented_tag(gateway: Gateway) -> None:
    resp = await gateway.collect.get("/demo")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert "noindex" in resp.headers["X-Robots-Tag"]
    page = await resp.text()
    assert '<script async src="df.js" data-source-id="src_abc123" data-auto-page="true">' in page
    # The stub on the demo is the one the tag documents, character for character.
    [documented] = STUB_RE.findall((STATIC / "df.js").read_text())
    assert STUB_RE.findall(page)[0] == documented


def test_readme_installs_the_documented_stub() -> None:
    [documented] = STUB_RE.findall((STATIC / "df.js").read_text())
    readme = (STATIC.parents[1] / "README.md").read_text()
    assert STUB_RE.findall(readme) == [documented]


async def test_demo_page_names_another_source(gateway: Gateway) -> None:
    page = await (await gateway.collect.get("/demo", params={"source_id": "src_shop-1"})).text()
    assert 'data-source-id="src_shop-1"' in page


@pytest.mark.parametrize(
    "source_id",
    ['"><script>alert(1)</script>', "src abc", "", "x" * 201, "src\n"],
    ids=["markup", "space", "empty", "too-long", "newline"],
)
async def test_demo_page_refuses_what_is_not_a_source_id(gateway: Gateway, source_id: str) -> None:
    resp = await gateway.collect.get("/demo", params={"source_id": source_id})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_field"
