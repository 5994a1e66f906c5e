"""The Management UI, driven like an operator drives it, checked against the Management API.

Each test works through the page (labels, buttons, the keyboard) and then asks the API (or the
TikTok double) whether what the UI did is what was stored. Screens are saved into docs/.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from typing import Any

import pytest

try:
    from playwright.async_api import expect
except ImportError:  # the `console` fixture skips with the reason (fails under REQUIRE_SERVICES)
    expect = None

from tests.browser.conftest import tag_stub
from tests.tiktok_double import Answer
from tests.ui.conftest import Console

pytestmark = pytest.mark.slow

SEED_PIXEL = "CXXXXXXXXXXXXXXXXX"
SEED_TOKEN = "your_access_token"


async def _api(console: Console, method: str, path: str, **kwargs: Any) -> Any:
    resp = await console.gw.admin.request(method, path, **kwargs)
    assert resp.status < 300, await resp.text()
    return await resp.json() if resp.status != 204 else None


async def _seed_source(console: Console) -> None:
    await console.gw.create_source(id="src_abc123", name="My shop", default_phone_region="US")


async def _seed_integration(console: Console) -> dict[str, Any]:
    return await console.gw.create_integration(
        source_id="src_abc123",
        config={"pixel_code": SEED_PIXEL, "access_token": SEED_TOKEN},
    )


async def test_a_wrong_token_shows_an_error_and_is_not_kept(console: Console) -> None:
    console.expect_console_error("status of 401")  # the refusal this test provokes
    page = console.page
    await console.open()
    await page.get_by_label("Admin token").fill("not-the-admin-token-000")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text("That admin token is not valid.")).to_be_visible()
    await expect(page.get_by_label("Admin token")).to_be_focused()
    assert await page.evaluate("sessionStorage.length") == 0
    assert await page.evaluate("localStorage.length") == 0
    await console.screenshot("ui-sign-in.png")

    await console.sign_in()  # the right one works, and is kept for this tab only
    assert await page.evaluate("Object.values(sessionStorage)") == [
        console.gw.wired.admin_tokens[0].reveal()
    ]
    assert await page.evaluate("localStorage.length") == 0
    assert "token" not in page.url.lower()


async def test_add_a_source_and_the_seeds_integration_through_the_forms(console: Console) -> None:
    page = console.page
    await console.sign_in()

    # Sources > Add Source, with the snippet to paste, its source id filled in.
    await page.get_by_role("link", name="Sources").click()
    await page.get_by_role("link", name="Add Source").first.click()
    await page.get_by_label("Source ID").fill("src_abc123")
    await page.get_by_label("Name", exact=True).fill("My shop")
    await page.get_by_label("Allowed origins").fill("https://shop.example")
    await page.get_by_label("Default phone region").fill("us")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("heading", name="Server key (shown once)")).to_be_visible()
    snippet = await page.locator("#snippet").inner_text()
    assert f"<script>{tag_stub()}</script>" in snippet  # the stub df.js documents
    assert re.search(
        r'<script async src="http://[^"]+/df\.js" data-source-id="src_abc123"', snippet
    )
    await console.screenshot("ui-source.png")
    source = await _api(console, "GET", "/v1/admin/sources/src_abc123")
    assert source["allowed_origins"] == ["https://shop.example"]
    assert source["default_phone_region"] == "US"

    # Integrations > Add Integration > TikTok Events API > pixel code, token, consent > Save.
    await page.get_by_role("link", name="Integrations").click()
    await page.get_by_role("link", name="Add Integration").first.click()
    await page.get_by_role("link", name=re.compile("TikTok Events API")).click()
    await page.get_by_label("Pixel code").fill(SEED_PIXEL)
    await page.get_by_label("Access token").fill(SEED_TOKEN)
    for category in ("advertising", "analytics", "marketing", "functional"):
        await expect(page.get_by_label(category, exact=True)).to_be_visible()
    await page.get_by_label("advertising", exact=True).check()
    await expect(page.get_by_label("Test event code")).to_be_empty()
    await console.screenshot("ui-integration-form.png")
    await page.get_by_role("button", name="Save").click()

    row = page.locator("#integrations tbody tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("TikTok Events API")
    await expect(row).to_contain_text("Active")
    await expect(page.get_by_role("status")).to_contain_text("saved")
    await console.screenshot("ui-integrations.png")

    # What the UI did is what was stored: the seed's request, verbatim.
    (integration,) = (await _api(console, "GET", "/v1/admin/integrations"))["integrations"]
    assert integration["source_id"] == "src_abc123"
    assert integration["vendor"] == "tiktok"
    assert integration["name"] == "TikTok Events API"
    assert integration["enabled"] is True
    assert integration["config"]["pixel_code"] == SEED_PIXEL
    assert integration["config"]["test_event_code"] is None
    assert integration["consent_categories"] == ["advertising"]
    stored = await console.gw.wired.store.get_integration(integration["id"])
    assert stored is not None and stored.config.access_token.reveal() == SEED_TOKEN


async def test_validation_errors_show_next_to_their_field(console: Console) -> None:
    console.expect_console_error("status of 422")  # the refusal this test provokes
    page = console.page
    await _seed_source(console)
    await console.sign_in()
    await console.go("#/integrations/new/tiktok")
    await page.get_by_label("Pixel code").fill("not a pixel!")
    await page.get_by_label("Access token").fill(SEED_TOKEN)
    await page.get_by_role("button", name="Save").click()
    pixel = page.get_by_label("Pixel code")
    await expect(pixel).to_have_attribute("aria-invalid", "true")
    await expect(pixel).to_be_focused()
    error = page.locator(f"#{await pixel.get_attribute('id')}-error")
    await expect(error).to_have_text(re.compile("config.pixel_code must be 5 to 64 letters"))
    await expect(page.get_by_role("alert")).to_contain_text("Not saved")
    assert (await _api(console, "GET", "/v1/admin/integrations"))["integrations"] == []


async def test_edit_keeps_the_token_write_only_then_pause_disable_and_delete(
    console: Console,
) -> None:
    page = console.page
    await _seed_source(console)
    integration = await _seed_integration(console)
    iid = integration["id"]
    await console.sign_in()

    await page.get_by_role("link", name="Edit TikTok Events API").click()
    token_input = page.get_by_label("Access token")
    await expect(token_input).to_have_value("")
    await expect(token_input).to_have_attribute("type", "password")
    assert "****oken" in (await token_input.get_attribute("placeholder") or "")
    assert SEED_TOKEN not in await page.content()
    await page.get_by_label("Test event code").fill("TEST123")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#integrations")).to_be_visible()
    stored = await console.gw.wired.store.get_integration(iid)
    assert stored is not None
    assert stored.config.test_event_code == "TEST123"
    assert stored.config.access_token.reveal() == SEED_TOKEN  # kept: the field was left empty

    await page.get_by_role("link", name="Edit TikTok Events API").click()
    await page.get_by_label("Access token").fill("a_new_access_token")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#integrations")).to_be_visible()
    stored = await console.gw.wired.store.get_integration(iid)
    assert stored is not None and stored.config.access_token.reveal() == "a_new_access_token"

    await page.get_by_role("button", name="Pause TikTok Events API").click()
    await expect(page.locator("#integrations tbody tr")).to_contain_text("Paused: paused by admin")
    assert (await _api(console, "GET", f"/v1/admin/integrations/{iid}"))["status"][
        "state"
    ] == "paused"
    await page.get_by_role("button", name="Resume TikTok Events API").click()
    await expect(page.locator("#integrations tbody tr")).to_contain_text("Active")
    await page.get_by_role("button", name="Disable TikTok Events API").click()
    await expect(page.locator("#integrations tbody tr")).to_contain_text("Disabled")
    assert (await _api(console, "GET", f"/v1/admin/integrations/{iid}"))["enabled"] is False

    # Delete asks first; Cancel (here with the keyboard) keeps it.
    await page.get_by_role("button", name="Delete TikTok Events API").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("Delete the integration")
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("status")).to_contain_text("Nothing was deleted")
    await _api(console, "GET", f"/v1/admin/integrations/{iid}")
    await page.get_by_role("button", name="Delete TikTok Events API").click()
    await dialog.get_by_role("button", name="Delete").click()
    await expect(page.get_by_role("status")).to_have_text("TikTok Events API deleted.")
    await expect(page.get_by_text("No integration yet.")).to_be_visible()
    resp = await console.gw.admin.get(f"/v1/admin/integrations/{iid}")
    assert resp.status == 404


async def test_the_event_detail_shows_hit_request_facts_tiktok_request_and_answer_side_by_side(
    console: Console,
) -> None:
    page = console.page
    await _seed_source(console)
    await console.gw.create_integration(
        source_id="src_abc123",
        config={"pixel_code": SEED_PIXEL, "access_token": SEED_TOKEN, "test_event_code": "TEST777"},
    )
    await console.sign_in()
    await page.get_by_role("link", name="Event debugger").click()
    await expect(page.locator("#live-state")).to_have_text("Live")
    resp = await console.gw.collect.post(
        "/v1/t",
        json={
            "source_id": "src_abc123",
            "event": "Order Completed",
            "message_id": "ORD-SIDE",
            "traits": {"email": "Jane@Example.com"},
            "properties": {
                "order_id": "ORD-SIDE",
                "total": 129.99,
                "currency": "USD",
                "products": [{"product_id": "SKU-A", "price": 49.99, "quantity": 2}],
            },
            "context": {"consent": {"advertising": True}},
        },
        headers={"User-Agent": "Mozilla/5.0 (SideBySide)", "Cookie": "_ttp=ttp-side-1"},
    )
    assert resp.status == 200
    row = page.locator('#events tr[data-event-id="ORD-SIDE"]')
    await expect(row).to_have_attribute("data-status", "delivered")
    await row.get_by_role("button", name=re.compile("Details of ORD-SIDE")).click()
    details = page.locator("#event-details")
    hit, facts = details.locator("#pane-hit"), details.locator("#pane-facts")
    request, answer = details.locator("#pane-request"), details.locator("#pane-answer")
    await expect(hit).to_contain_text('"total": 129.99')
    await expect(hit).to_contain_text('"product_id": "SKU-A"')
    await expect(hit).to_contain_text(hashlib.sha256(b"jane@example.com").hexdigest())
    await expect(facts).to_contain_text("Mozilla/5.0 (SideBySide)")
    await expect(facts).to_contain_text("_ttp = ttp-side-1")
    await expect(facts).to_contain_text(re.compile(r"Cookies set\s*_ttp = ttp-side-1"))
    await expect(facts).to_contain_text(re.compile(r"\((just now|\d+ s ago)\)"))
    await expect(request).to_contain_text('"test_event_code": "TEST777"')
    await expect(request).to_contain_text('"event_source": "web"')
    await expect(request).to_contain_text(f'"event_source_id": "{SEED_PIXEL}"')
    await expect(answer).to_contain_text("Request ID")
    await expect(answer).to_contain_text(re.compile(r"Answered.*ago|Answered.*just now"))
    text = await details.inner_text()
    assert "Jane" not in text and "jane@example.com" not in text and SEED_TOKEN not in text
    # Side by side on a laptop: the four panes share one row.
    tops = {
        round((await p.bounding_box() or {"y": -1})["y"]) for p in (hit, facts, request, answer)
    }
    assert len(tops) == 1, tops
    await console.screenshot("ui-event-detail.png")

    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await request.get_by_role("button", name="Copy TikTok request").click()
    await expect(request.get_by_role("button", name="Copy TikTok request")).to_have_text("Copied")
    copied = json.loads(await page.evaluate("navigator.clipboard.readText()"))
    assert copied["test_event_code"] == "TEST777"
    assert copied["data"][0]["event_id"] == "ORD-SIDE"


async def _until_delivered(console: Console, event_ids: list[str], tiktok_event: str) -> None:
    """Until the ledger shows these events delivered as that TikTok event (the worker notes
    outcomes behind its back; the test's timeout bounds the wait)."""
    while True:
        await console.gw.wired.ledger.flush()
        records = [
            (await _api(console, "GET", f"/v1/admin/events/{event_id}"))["records"][0]
            for event_id in event_ids
        ]
        if all(
            r["delivery"]["status"] == "delivered" and r["tiktok_event"] == tiktok_event
            for r in records
        ):
            return
        await asyncio.sleep(0.05)


async def test_re_processing_after_a_mapping_change_counts_first_then_queues(
    console: Console,
) -> None:
    page = console.page
    await _seed_source(console)
    integration = await _seed_integration(console)
    for message_id in ("SIGN-1", "SIGN-2"):
        resp = await console.gw.collect.post(
            "/v1/t",
            json={
                "source_id": "src_abc123",
                "event": "Signed Up",
                "message_id": message_id,
                "context": {"consent": {"advertising": True}},
            },
        )
        assert resp.status == 200
    await console.tiktok.wait_for(lambda: len(console.tiktok.accepted_ids()) == 2)
    await console.gw.wired.ledger.flush()
    sent_before = len(console.tiktok.requests)
    await _api(
        console,
        "PATCH",
        f"/v1/admin/integrations/{integration['id']}",
        json={"config": {"event_mapping": {"Signed Up": "Subscribe"}}},
    )
    await console.sign_in()
    await page.get_by_role("link", name="Edit TikTok Events API").click()
    await page.get_by_role("button", name="Re-process…").click()
    dialog = page.get_by_role("dialog", name="Re-process hits for TikTok Events API")
    counts = dialog.locator("#reprocess-counts")
    await expect(counts.locator('[data-count="hits"]')).to_have_text("2")
    await expect(counts.locator('[data-count="queue"]')).to_have_text("2")
    await expect(counts.locator('[data-count="skipped_delivered"]')).to_have_text("0")
    await expect(dialog.locator("#reprocess-retention")).to_have_text(
        "Raw hits are kept 72 hours: older ones can no longer be re-processed."
    )
    assert len(console.tiktok.requests) == sent_before  # the count queued nothing
    await console.screenshot("ui-reprocess.png")

    await dialog.get_by_role("button", name="Re-process 2 events").click()
    await expect(dialog.locator("#reprocess-done")).to_have_text(
        "2 events queued with the current mapping."
    )
    await console.tiktok.wait_for(
        lambda: (
            sorted(e["event"] for r in console.tiktok.requests for e in r.events).count("Subscribe")
            == 2
        )
    )
    resent = [e for r in console.tiktok.requests[sent_before:] for e in r.events]
    assert sorted(e["event_id"] for e in resent) == ["SIGN-1", "SIGN-2"]

    # A new count: both are now delivered under the new name; nothing is left to queue.
    await _until_delivered(console, ["SIGN-1", "SIGN-2"], "Subscribe")
    await dialog.get_by_role("button", name="Count (dry run)").click()
    await expect(counts.locator('[data-count="skipped_delivered"]')).to_have_text("2")
    await expect(dialog.get_by_role("button", name="Re-process 0 events")).to_be_disabled()


async def test_an_event_appears_live_in_the_debugger_with_tiktoks_answer(
    console: Console,
) -> None:
    page = console.page
    await _seed_source(console)
    await _seed_integration(console)
    await console.sign_in()
    await page.get_by_role("link", name="Event debugger").click()
    await expect(page.locator("#live-state")).to_have_text("Live")

    resp = await console.gw.collect.post(
        "/v1/t",
        json={
            "source_id": "src_abc123",
            "event": "Order Completed",
            "message_id": "ORD-001",
            "traits": {"email": "Jane@Example.com", "phone": "+1 (555) 123-4567"},
            "properties": {
                "order_id": "ORD-001",
                "total": 129.99,
                "currency": "USD",
                "products": [{"product_id": "SKU-A", "price": 49.99, "quantity": 2}],
            },
            "context": {
                "consent": {"advertising": True},
                "page": {"url": "https://shop.example/thanks?ttclid=E.C.P.abc"},
            },
        },
    )
    assert resp.status == 200
    row = page.locator('#events tr[data-event-id="ORD-001"]')
    await expect(row).to_have_attribute("data-status", "delivered")
    await expect(row).to_contain_text("Order Completed")
    await expect(row).to_contain_text("CompletePayment")
    await expect(row).to_contain_text("code 0: OK")
    await row.get_by_role("button", name=re.compile("Details of ORD-001")).click()
    details = page.locator("#event-details")
    await expect(details.get_by_role("heading", name="Event ORD-001")).to_be_focused()
    await expect(details).to_contain_text("consent given for advertising")
    await expect(details).to_contain_text('"request_id"')
    text = await details.inner_text()
    # PII shows only hashed. (Not a bare "555": hex digests and timestamps may contain it.)
    for raw in ("Jane", "jane@example.com", "(555) 123-4567", "5551234567", "123-4567"):
        assert raw not in text
    quality = page.locator("#match-quality")
    await expect(quality).to_contain_text("100%")
    # The match keys identify() can add are columns too; this anonymous order carried none.
    for signal in ("first_name", "last_name", "city", "state", "country", "zip_code"):
        await expect(quality.locator(f'th[data-signal="{signal}"]')).to_have_text(signal)
        await expect(quality.locator(f'td[data-signal="{signal}"]')).to_have_text(" 0%")
    await expect(quality.locator('th[data-signal="external_id_anonymous"]')).to_have_text(
        "external_id: anonymous only"
    )
    await expect(quality.locator('td[data-signal="external_id_anonymous"]')).to_have_text(" 100%")
    await expect(quality.locator('td[data-signal="external_id_user"]')).to_have_text(" 0%")
    await console.screenshot("ui-debugger.png")

    # The same record through the API: the order reached TikTok.
    record = await _api(console, "GET", "/v1/admin/events/ORD-001")
    (delivered,) = record["records"]
    assert delivered["delivery"]["status"] == "delivered"
    assert console.tiktok.accepted_ids() == ["ORD-001"]


async def test_a_dead_letter_is_replayed_from_its_screen(console: Console) -> None:
    page = console.page
    tiktok = console.tiktok
    await _seed_source(console)
    integration = await _seed_integration(console)
    iid = integration["id"]
    tiktok.reject_event_ids.add("ORD-BAD")
    resp = await console.gw.collect.post(
        "/v1/t",
        json={
            "source_id": "src_abc123",
            "event": "Product Added",
            "message_id": "ORD-BAD",
            "properties": {"product_id": "SKU-A", "price": 5, "currency": "USD"},
            "context": {"consent": {"advertising": True}},
        },
    )
    assert resp.status == 200
    worker = console.gw.wired.worker
    assert worker is not None
    await worker.drain(10)

    await console.sign_in()
    await page.get_by_role("link", name="Dead letters").click()
    row = page.locator("#dead-letters tbody tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("ORD-BAD")
    await expect(row).to_contain_text("rejected")
    await expect(row).to_contain_text("40002")
    await console.screenshot("ui-dead-letters.png")

    tiktok.reject_event_ids.clear()  # the cause is fixed
    await row.get_by_role("button", name="Replay ORD-BAD").click()
    await expect(page.get_by_role("status")).to_contain_text("1 dead letter replayed")
    await expect(page.get_by_text("No dead letters")).to_be_visible()

    await worker.drain(10)
    listing = await _api(console, "GET", f"/v1/admin/integrations/{iid}/dead-letters")
    assert listing["dead_letters"] == []
    assert tiktok.accepted_ids() == ["ORD-BAD"]


async def test_sign_in_and_edit_a_source_with_the_keyboard(console: Console) -> None:
    console.expect_console_error("status of 422")  # the refusal this test provokes
    page = console.page
    await _seed_source(console)
    await console.open()
    await expect(page.get_by_label("Admin token")).to_be_focused()
    await page.keyboard.type(console.gw.wired.admin_tokens[0].reveal())
    await page.keyboard.press("Enter")
    await page.get_by_role("heading", name="Integrations").wait_for()

    await console.go("#/sources/src_abc123")
    await expect(page.get_by_label("Source ID")).to_be_disabled()
    await expect(page.locator("#snippet")).to_contain_text('data-source-id="src_abc123"')
    origins = page.get_by_label("Allowed origins")
    await origins.fill("https://shop.example\nftp://nope")
    await page.get_by_role("button", name="Save").click()
    await expect(origins).to_have_attribute("aria-invalid", "true")
    await expect(page.locator(f"#{await origins.get_attribute('id')}-error")).to_contain_text(
        "allowed_origins[1]"
    )

    await origins.fill("https://shop.example\nhttps://www.shop.example")
    await page.get_by_label("Cookie domain").fill("shop.example")
    await page.get_by_label("Consent default").select_option("grant")
    await page.get_by_role("button", name="Save").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text("saved")
    await expect(page.locator("#sources")).to_contain_text("shop.example")
    source = await _api(console, "GET", "/v1/admin/sources/src_abc123")
    assert source["allowed_origins"] == ["https://shop.example", "https://www.shop.example"]
    assert source["cookie_domain"] == "shop.example"
    assert source["consent_default"] == "grant"


async def test_a_source_becomes_a_crm_source_through_the_form(console: Console) -> None:
    console.expect_console_error("status of 422")  # the refusal this test provokes
    page = console.page
    await _seed_source(console)
    await console.sign_in()
    await console.go("#/sources/src_abc123")
    await expect(page.get_by_label("Event source")).to_have_value("web")

    # A CRM source without its event set id is refused, and the form names the field.
    await page.get_by_label("Event source").select_option("crm")
    await page.get_by_role("button", name="Save").click()
    source_id = page.get_by_label("TikTok app or event set ID")
    await expect(source_id).to_have_attribute("aria-invalid", "true")

    await source_id.fill("7301234567890123456")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_contain_text("saved")
    source = await _api(console, "GET", "/v1/admin/sources/src_abc123")
    assert source["event_source"] == "crm"
    assert source["event_source_id"] == "7301234567890123456"


async def test_a_webhook_integration_through_the_form_the_registry_describes(
    console: Console,
) -> None:
    console.expect_console_error("status of 422")  # the refusal this test provokes
    page = console.page
    await console.sign_in()
    await _seed_source(console)
    await page.get_by_role("link", name="Integrations").click()
    await page.get_by_role("link", name="Add Integration").first.click()
    # The vendor list comes from the registry: TikTok and the webhook.
    await expect(page.locator(".vendors li")).to_have_count(2)
    await page.get_by_role("link", name=re.compile("Webhook")).click()
    await page.get_by_label("URL").fill("ftp://hooks.example/events")
    await page.get_by_label("Secret").fill("whsec_ui_0123456789")
    await page.get_by_role("button", name="Save").click()
    # The API's refusal shows next to the field it names.
    await expect(page.locator("#main .field-error:not([hidden])")).to_contain_text("http or https")
    await page.get_by_label("URL").fill("https://hooks.example/events")
    await page.get_by_role("button", name="Save").click()

    row = page.locator("#integrations tbody tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("webhook https://hooks.example/events")
    (integration,) = (await _api(console, "GET", "/v1/admin/integrations"))["integrations"]
    assert integration["vendor"] == "webhook"
    assert integration["config"]["url"] == "https://hooks.example/events"
    assert integration["config"]["secret"] == "****6789"
    stored = await console.gw.wired.store.get_integration(integration["id"])
    assert stored is not None
    assert stored.config.secret is not None  # type: ignore[attr-defined]
    assert stored.config.secret.reveal() == "whsec_ui_0123456789"  # type: ignore[attr-defined]


# ------------------------------------------------------- issue 14: the debugger people can trust

PHONE = {"width": 390, "height": 844}


async def _order(console: Console, message_id: str, **context: Any) -> None:
    resp = await console.gw.collect.post(
        "/v1/t",
        json={
            "source_id": "src_abc123",
            "event": "Order Completed",
            "message_id": message_id,
            "user_id": "customer-42",
            "traits": {"email": "Jane.Doe@Example.com"},
            "properties": {"order_id": f"ORDER-{message_id}", "total": 10, "currency": "USD"},
            "context": {"consent": {"advertising": True}, **context},
        },
    )
    assert resp.status == 200, await resp.text()


async def test_a_test_send_needs_its_code_shows_the_request_and_a_refusal_in_red(
    console: Console,
) -> None:
    """Item 2: from the unsaved form, with a test event code, the exact body, never green when
    refused, and the debugger marks it as a test."""
    page = console.page
    console.expect_console_error("status of 422")  # the send without a code, refused
    await _seed_source(console)
    await console.sign_in()
    await console.go("#/integrations/new/tiktok")
    await page.get_by_label("Pixel code").fill(SEED_PIXEL)
    await page.get_by_label("Access token").fill(SEED_TOKEN)
    await page.get_by_role("button", name="Send a test event…").click()
    dialog = page.get_by_role("dialog", name="Send a test event")
    code = dialog.get_by_label("Test event code")
    await expect(code).to_be_focused()
    await expect(code).to_have_value("")  # the form has none: nothing prefilled
    await dialog.get_by_role("button", name="Send test event").click()
    await expect(code).to_have_attribute("aria-invalid", "true")
    assert console.tiktok.requests == []  # nothing left without a code

    await code.fill("TEST777")
    await dialog.get_by_role("button", name="Send test event").click()
    outcome = dialog.locator(".test-outcome")
    await expect(outcome).to_have_attribute("data-accepted", "true")
    await expect(outcome).to_have_class(re.compile(r"\bok\b"))
    [request] = console.tiktok.requests
    assert request.body["test_event_code"] == "TEST777"
    shown = await dialog.locator("pre.json").first.inner_text()
    assert json.loads(shown) == request.body  # the exact body TikTok received
    assert SEED_TOKEN not in await page.content()
    await console.screenshot("ui-test-send.png")

    # A refusal is red, and says why.
    console.tiktok.play(Answer(code=40001, message="No permission to operate pixel code"))
    await dialog.get_by_role("button", name="Send test event").click()
    await expect(outcome).to_have_attribute("data-accepted", "false")
    await expect(outcome).to_have_class(re.compile(r"\bfailed\b"))
    await expect(outcome).to_contain_text("40001")
    await expect(page.get_by_role("alert")).to_contain_text("Test event refused")
    await dialog.get_by_role("button", name="Close").click()
    # Nothing was saved by testing.
    assert (await _api(console, "GET", "/v1/admin/integrations"))["integrations"] == []

    await page.get_by_role("link", name="Event debugger").click()
    rows = page.locator("#events tr[data-test='true']")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("Test")
    await expect(
        page.locator("#events tr[data-status='rejected'][data-test='true']")
    ).to_have_count(1)


async def test_a_bad_token_pause_explains_the_fix_links_the_field_and_warns_on_resume(
    console: Console,
) -> None:
    """Item 3."""
    page = console.page
    await _seed_source(console)
    integration = await _seed_integration(console)
    console.tiktok.play(Answer(code=40001, message="No permission to operate pixel code"))
    await _order(console, "BAD-TOKEN-1")
    worker = console.gw.wired.worker
    assert worker is not None
    await worker.drain(10)
    await console.gw.wired.ledger.flush()

    await console.sign_in()
    row = page.locator("#integrations tbody tr")
    await expect(row).to_contain_text("Paused")
    hint = row.locator("[data-pause-hint]")
    await expect(hint).to_contain_text("TikTok rejected the access token")
    await expect(hint).to_contain_text("paste a new one")
    await expect(hint).to_contain_text("1 request refused")
    await expect(row.locator("td[data-label='Last error']")).to_contain_text("40001")
    await expect(row.locator("td[data-label='Failed']")).to_contain_text("1 request refused")
    await console.screenshot("ui-paused.png")

    # Resume warns first; cancelling keeps it paused.
    await page.get_by_role("button", name="Resume TikTok Events API").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("pause TikTok Events API again")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(page.get_by_role("status")).to_contain_text("stays paused")
    state = (await _api(console, "GET", f"/v1/admin/integrations/{integration['id']}"))["status"]
    assert state["state"] == "paused"

    # The link opens the form on the access token field.
    await hint.get_by_role("link", name="Paste a new access token").click()
    await expect(page.get_by_label("Access token")).to_be_focused()
    await page.get_by_label("Access token").fill("a_fresh_access_token")
    await page.get_by_role("button", name="Save").click()
    await expect(row).to_contain_text("Active")
    await worker.drain(10)
    assert console.tiktok.accepted_ids() == ["BAD-TOKEN-1"]


async def test_one_search_box_finds_orders_users_and_click_ids_in_a_time_range(
    console: Console,
) -> None:
    """Item 7."""
    page = console.page
    await _seed_source(console)
    await _seed_integration(console)
    await _order(console, "S-1")
    await _order(console, "S-2", page={"url": "https://shop.example/t?ttclid=E.C.P.search-me"})
    worker = console.gw.wired.worker
    assert worker is not None
    await worker.drain(10)
    await console.gw.wired.ledger.flush()
    await console.sign_in()
    await page.get_by_role("link", name="Event debugger").click()
    box = page.get_by_role("searchbox", name="Search")
    rows = page.locator("#events tbody tr[data-event-id]")

    async def search(text: str) -> None:
        await box.fill(text)
        await box.press("Enter")
        # An empty box goes back to the live view, which says so instead.
        said = "Searched" if text else "Showing the live view"
        await expect(page.get_by_role("status").filter(has_text=said)).to_be_visible()

    await search("ORDER-S-1")  # an order id
    await expect(rows).to_have_count(1)
    await expect(rows).to_have_attribute("data-event-id", "S-1")
    await search("E.C.P.search-me")  # a ttclid
    await expect(rows).to_have_count(1)
    await expect(rows).to_have_attribute("data-event-id", "S-2")
    await search("jane.doe@example.com 48h")  # a user, by email, in a wider range
    await expect(rows).to_have_count(2)
    await expect(page.locator("#live-state")).to_contain_text("last 48 h")
    await console.screenshot("ui-search.png")
    await search("customer-42")  # a user, by user id
    await expect(rows).to_have_count(2)
    await search("CompletePayment")  # an event name
    await expect(rows).to_have_count(2)
    await search("S-2")  # an event id
    await expect(rows).to_have_count(1)
    await search("ORD-NOWHERE 6h")
    await expect(page.locator("#events-empty")).to_have_text(
        "Nothing matches “ORD-NOWHERE” in the last 6 hours."
    )
    await search("")  # back to the live view
    await expect(page.locator("#live-state")).to_have_text("Live")
    await expect(rows).to_have_count(2)


async def test_sign_in_shows_no_navigation_and_notices_stay_on_their_screen(
    console: Console,
) -> None:
    """Item 8: the sign-in screen, and notices."""
    page = console.page
    console.expect_console_error("status of 422")
    await _seed_source(console)
    await console.open()
    await expect(page.get_by_role("navigation")).to_be_hidden()
    await expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    await console.sign_in()
    await expect(page.get_by_role("navigation")).to_be_visible()

    # An error on one screen is gone on the next.
    await console.go("#/integrations/new/tiktok")
    await page.get_by_label("Pixel code").fill("not a pixel!")
    await page.get_by_label("Access token").fill(SEED_TOKEN)
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("alert")).to_contain_text("Not saved")
    await page.get_by_role("link", name="Sources").click()
    await expect(page.get_by_role("heading", name="Sources")).to_be_visible()
    await expect(page.locator("#alert")).to_be_hidden()
    # A notice raised as the UI moves on ("saved", then the list) is shown there, once.
    await console.go("#/sources/src_abc123")
    await page.get_by_label("Name", exact=True).fill("My shop, renamed")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_contain_text("saved")
    await page.get_by_role("link", name="Dead letters").click()
    await expect(page.locator("#status")).to_be_hidden()

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("navigation")).to_be_hidden()


@pytest.mark.gateway_settings(GATEWAY_PUBLIC_URL="https://collect.shop.example")
async def test_the_install_snippet_uses_the_public_url_setting(console: Console) -> None:
    page = console.page
    await _seed_source(console)
    await console.sign_in()
    await console.go("#/sources/src_abc123")
    await expect(page.locator("#snippet")).to_contain_text(
        '<script async src="https://collect.shop.example/df.js" data-source-id="src_abc123"'
    )
    await expect(page.get_by_text("Set by GATEWAY_PUBLIC_URL")).to_be_visible()


async def test_a_phone_reaches_the_navigation_the_integrations_actions_and_event_details(
    console: Console,
) -> None:
    """Item 8: 390 px wide."""
    page = console.page
    await page.set_viewport_size(PHONE)
    await _seed_source(console)
    await _seed_integration(console)
    await _order(console, "PHONE-1")
    worker = console.gw.wired.worker
    assert worker is not None
    await worker.drain(10)
    await console.sign_in()

    async def within_screen(locator: Any) -> None:
        await expect(locator).to_be_visible()
        box = await locator.bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box

    for name in ("Integrations", "Sources", "Dead letters", "Event debugger"):
        await within_screen(page.get_by_role("navigation").get_by_role("link", name=name))
    await within_screen(page.get_by_role("link", name="Edit TikTok Events API"))
    for name in ("Disable", "Pause", "Delete"):
        await within_screen(page.get_by_role("button", name=f"{name} TikTok Events API"))
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await console.screenshot("ui-phone-integrations.png")

    await page.get_by_role("button", name="Pause TikTok Events API").click()
    await expect(page.locator("#integrations tbody tr")).to_contain_text("Paused")

    await page.get_by_role("link", name="Event debugger").click()
    row = page.locator('#events tr[data-event-id="PHONE-1"]')
    await expect(row).to_have_attribute("data-status", "delivered")
    await within_screen(row.get_by_role("button", name=re.compile("Details of PHONE-1")))
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await row.get_by_role("button", name=re.compile("Details of PHONE-1")).click()
    heading = page.locator("#event-details").get_by_role("heading", name="Event PHONE-1")
    await expect(heading).to_be_focused()
    await within_screen(heading)
    await within_screen(page.locator("#event-details").get_by_role("button", name="Close"))
    await console.screenshot("ui-phone-debugger.png")


async def test_replay_keeps_a_still_failing_purchase_then_fix_previews_and_replays_it(
    console: Console,
) -> None:
    page = console.page
    tiktok = console.tiktok
    await _seed_source(console)
    iid = (await _seed_integration(console))["id"]
    resp = await console.gw.collect.post(
        "/v1/t",
        json={
            "source_id": "src_abc123",
            "event": "Order Completed",
            "message_id": "ORD-NOVALUE",
            "properties": {"order_id": "A-1001"},
            "context": {"consent": {"advertising": True}},
        },
    )
    assert resp.status == 200

    await console.sign_in()
    await page.get_by_role("link", name="Dead letters").click()
    row = page.locator("#dead-letters tbody tr")
    await expect(row).to_contain_text("missing_value_or_currency")
    await row.get_by_role("button", name="Replay ORD-NOVALUE").click()
    await expect(page.get_by_role("status")).to_contain_text(
        "1 still failing (missing_value_or_currency)"
    )
    await expect(row).to_have_count(1)  # still a dead letter
    assert tiktok.requests == []

    await row.get_by_role("button", name="Fix ORD-NOVALUE").click()
    dialog = page.get_by_role("dialog")
    outcome = dialog.locator(".test-outcome")
    await expect(outcome).to_contain_text("still failing: missing_value_or_currency")
    await expect(dialog.locator("pre.json")).to_contain_text('"order_id": "A-1001"')
    console.expect_console_error("422")
    await dialog.get_by_label("Value").fill("lots")
    await dialog.get_by_role("button", name="Preview").click()
    await expect(dialog.get_by_text("changes.value must be a number")).to_be_visible()
    await dialog.get_by_label("Value").fill("49.9")
    await dialog.get_by_label("Currency").fill("eur")
    await dialog.get_by_role("button", name="Preview").click()
    await expect(outcome).to_contain_text("Passes the checks")
    await expect(dialog.locator("pre.json")).to_contain_text('"currency": "EUR"')
    await expect(dialog.locator("pre.json")).to_contain_text('"value": 49.9')
    await console.screenshot("ui-dead-letter-fix.png")
    assert tiktok.requests == []  # previews send nothing

    await dialog.get_by_role("button", name="Fix and replay").click()
    await expect(page.get_by_role("status")).to_contain_text("ORD-NOVALUE fixed")
    await expect(page.get_by_text("No dead letters")).to_be_visible()
    worker = console.gw.wired.worker
    assert worker is not None
    await worker.drain(10)
    [sent] = [a.event for a in tiktok.accepted if a.event["event_id"] == "ORD-NOVALUE"]
    assert sent["properties"]["value"] == 49.9
    assert sent["properties"]["currency"] == "EUR"
    listing = await _api(console, "GET", f"/v1/admin/integrations/{iid}/dead-letters")
    assert listing["dead_letters"] == []


async def test_refused_requests_per_source_and_identify_hits_show_in_the_debugger(
    console: Console,
) -> None:
    page = console.page
    await _seed_source(console)
    await _seed_integration(console)
    collect = console.gw.collect
    unknown = {"source_id": "src_gone", "event": "Order Completed"}
    assert (await collect.post("/v1/t", json=unknown)).status == 400
    no_event = {"source_id": "src_abc123", "type": "track", "traits": {"email": "x@example.com"}}
    assert (await collect.post("/v1/batch", json={"batch": [no_event]})).status == 400
    identify = {
        "source_id": "src_abc123",
        "message_id": "ID-001",
        "user_id": "customer-7",
        "traits": {"email": "Jane@Example.com"},
        "context": {"consent": {"advertising": True}},
    }
    assert (await collect.post("/v1/i", json=identify)).status == 200
    await console.gw.wired.ledger.flush()

    await console.sign_in()
    await page.get_by_role("link", name="Event debugger").click()
    refused = page.locator("#refused-requests tbody tr")
    await expect(refused).to_have_count(2)
    await expect(refused.first).to_contain_text("invalid_field")
    await expect(refused.first).to_contain_text("POST /v1/batch")
    await expect(refused.last).to_contain_text("HTTP 400")
    await expect(refused.last).to_contain_text("unknown_source")
    await expect(refused.last).to_contain_text("src_gone")
    await expect(page.locator("#refused")).not_to_contain_text("x@example.com")

    row = page.locator('#events tr[data-event-id="ID-001"]')
    await expect(row).to_contain_text("Identify (hashed traits kept)")
    await row.get_by_role("button", name=re.compile("Details of ID-001")).click()
    details = page.locator("#event-details")
    jane = hashlib.sha256(b"jane@example.com").hexdigest()
    await expect(details).to_contain_text('"identity"')
    await expect(details).to_contain_text(jane)
    text = await details.inner_text()
    for raw in ("Jane@Example.com", "jane@example.com", "customer-7"):
        assert raw not in text
    await expect(page.locator("#match-quality")).to_be_visible()
    await page.locator("#refused").scroll_into_view_if_needed()
    await console.screenshot("ui-refused.png")

    # Per source: the picker narrows the list to the shop's own refusals.
    await page.get_by_label("Source").select_option(label="My shop")
    await expect(page.get_by_role("heading", name="Refused requests of My shop")).to_be_visible()
    await expect(refused).to_have_count(1)
    await expect(refused.first).to_contain_text("invalid_field")


async def test_charts_show_outcomes_batches_latency_and_match_quality_over_time(
    console: Console,
) -> None:
    page = console.page
    await _seed_source(console)
    integration = await _seed_integration(console)
    iid = integration["id"]

    async def hit(message_id: str, consent: bool, event: str = "Product Viewed") -> None:
        body = {
            "source_id": "src_abc123",
            "event": event,
            "message_id": message_id,
            "properties": {"product_id": "SKU-A"},
            "context": {
                "consent": {"advertising": consent},
                "page": {"url": "https://shop.example/p?ttclid=E.C.P.chart"},
            },
        }
        assert (await console.gw.collect.post("/v1/t", json=body)).status == 200

    for n in range(3):
        await hit(f"view-{n}", True)
    await hit("no-consent", False)
    await hit("no-value", True, "Order Completed")
    worker = console.gw.wired.worker
    assert worker is not None
    await worker.drain(10)
    await console.gw.wired.ledger.flush()

    # What the charts must show, as the API says it (the worker may batch the views in one
    # request or two, and a minute may turn between the hits).
    timeline = await _api(console, "GET", f"/v1/admin/integrations/{iid}/timeline?hours=1")
    assert timeline["totals"] == {"delivered": 3, "failed": 0, "dead_lettered": 1, "denied": 1}
    sent = [p for p in timeline["points"] if p["requests"]]
    requests = sum(p["requests"] for p in sent)
    batch = sum(p["batch_size_avg"] for p in sent) / len(sent)
    figures = f"{requests} request{'' if requests == 1 else 's'} · {batch:.1f} events per request"

    await console.sign_in()
    activity = page.locator("#activity")
    item = activity.locator(f'.activity-item[data-integration="{iid}"]')
    delivered = item.locator("rect.seg.s-delivered")
    await expect(delivered).to_have_count(len([p for p in timeline["points"] if p["delivered"]]))
    await expect(item.locator("rect.seg.s-denied")).to_have_count(1)
    await expect(item.locator("rect.seg.s-dead")).to_have_count(1)
    await expect(item).to_contain_text(figures)
    await expect(delivered.locator("title").first).to_contain_text("delivered")
    await activity.scroll_into_view_if_needed()
    await console.screenshot("ui-activity.png")
    await activity.get_by_role("button", name="Last day").click()
    await expect(activity.get_by_role("button", name="Last day")).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(item.locator(".chart-title")).to_have_text("Events per 10 minutes by outcome")
    await expect(item.locator("rect.seg.s-denied")).to_have_count(1)

    await page.get_by_role("link", name="Edit TikTok Events API").click()
    panel = page.locator("#activity")
    await expect(panel.locator("figure.chart")).to_have_count(4)
    await expect(panel).to_contain_text("3 delivered, 0 failed, 1 dead-lettered, 1 denied")
    await expect(panel.locator('path.line[data-series="ttclid"]')).to_have_count(1)
    await expect(panel.locator('path.line[data-series="latency_avg"]')).to_have_count(1)
    await expect(panel.locator('path.line[data-series="batch_max"]')).to_have_count(1)
    await expect(panel.locator('path.line[data-series="email"]')).to_have_count(1)
    await panel.scroll_into_view_if_needed()
    await console.screenshot("ui-integration-activity.png")
