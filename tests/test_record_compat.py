"""Records already in a hit log when the gateway is upgraded are still delivered as they were.

The records below were rendered by the gateway before delivery decoded them into typed structs
(`main` at 8867978, `gateway.collect.rawhit.render`), byte for byte; the log may retain them
across an upgrade. They are appended to the running gateway's hit log and must reach the TikTok
double with every fact they hold: the hit's own hashes (traits, `context.traits`, the user id),
the identity cookie's, and what collection resolved.
"""

from __future__ import annotations

import hashlib

from gateway.log import LogRecord
from tests.conftest import Gateway
from tests.tiktok_double import TikTokDouble

RECEIVED_AT = 1796000000.123
EMAIL_HASH = "f7358be285b8758a99d560f8f9af9810527f3a61486b28d24ef64e80b2c85040"
PHONE_HASH = "abbf04d6f629b136344993dfb197f1fd9296f712eaf103ebc22b1cc29fb0f135"
USER_ID_HASH = "6d894aa3ee802549d7f340e7c1cf0d1c1cb14cd84f768d92ffaa6785337c4997"
CITY_HASH = "fb38a93fd89e1a5fc7852a5d7109e321d23a721a1899292273ac5a21dc4db378"  # the cookie's

_REQUEST = (
    '"request":{"received_at":"2026-11-30T00:53:20.123Z","source_id":"src_test",'
    '"integrations":["INTEGRATION_ID"],"from_server":false,"ip":"203.0.113.9",'
    '"user_agent":"Mozilla/5.0 (Old; Record)","locale":"de-DE","cookies_read":{"_ttp":"ttp-old-1",'
    '"_dfid":"anon-old-1","ttclid":"E.C.P.oldclick","_dfuser":"present"},"cookies_set":{}}'
)
_RESOLVED = (
    '"event_time":1796000000,"anonymous_id":"anon-old-1","ttp":"ttp-old-1",'
    '"ttclid":"E.C.P.oldclick","ip":"203.0.113.9","user_agent":"Mozilla/5.0 (Old; Record)",'
    f'"locale":"de-DE","identity":{{"city":"{CITY_HASH}"}}}}'
)
OLD_RECORDS = {
    "old-purchase-1": (
        '{"hit":{"type":"track","source_id":"src_test","event":"Order Completed","properties":'
        '{"products":[{"product_id":"SKU-1","price":30.5,"quantity":1}],"total":30.5,'
        f'"currency":"eur"}},"traits":{{"email":["{EMAIL_HASH}"]}},"user_id":"{USER_ID_HASH}",'
        '"message_id":"old-purchase-1","context":{"page":{"url":"https://shop.example/thanks"},'
        f'"consent":{{"advertising":true}},"traits":{{"phone":["{PHONE_HASH}"]}}}}}},{_REQUEST},'
        f'"resolved":{{"event_id":"old-purchase-1",{_RESOLVED}}}'
    ),
    "old-identify-1": (
        f'{{"hit":{{"type":"identify","source_id":"src_test","traits":{{"email":["{EMAIL_HASH}"]}},'
        f'"user_id":"{USER_ID_HASH}","message_id":"old-identify-1","context":{{"consent":'
        f'{{"advertising":true}}}}}},{_REQUEST}}}'
    ),
    "old-page-1": (
        '{"hit":{"type":"page","source_id":"src_test","message_id":"old-page-1","context":'
        '{"page":{"url":"https://shop.example/","referrer":"https://www.tiktok.com/"},'
        f'"consent":{{"advertising":true}}}}}},{_REQUEST},'
        f'"resolved":{{"event_id":"old-page-1",{_RESOLVED}}}'
    ),
}


async def test_records_rendered_before_the_typed_reader_are_delivered_as_they_say(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source(default_phone_region="US")
    integration = await gateway.create_integration()
    await gateway.wired.log.append(
        [
            LogRecord(
                "src_test",
                RECEIVED_AT,
                data.replace("INTEGRATION_ID", integration["id"]).encode(),
                event_id,
            )
            for event_id, data in OLD_RECORDS.items()
        ]
    )
    await gateway.delivered()

    assert tiktok.problems == []  # a valid v1.3 request each time
    by_id = {accepted.event["event_id"]: accepted.event for accepted in tiktok.accepted}
    assert set(by_id) == {"old-purchase-1", "old-page-1"}  # identify sends nothing itself
    anonymous_hash = hashlib.sha256(b"anon-old-1").hexdigest()
    purchase, page = by_id["old-purchase-1"], by_id["old-page-1"]
    assert purchase["event"] == "CompletePayment"
    assert purchase["event_time"] == 1796000000
    assert purchase["user"] == {
        "ttp": "ttp-old-1",
        "ttclid": "E.C.P.oldclick",
        # the hit's own user id first, then the browser's anonymous id
        "external_id": [USER_ID_HASH, anonymous_hash],
        "email": EMAIL_HASH,  # the hit's traits
        "phone": PHONE_HASH,  # its context.traits
        "city": CITY_HASH,  # the identity cookie's
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0 (Old; Record)",
        "locale": "de-DE",
    }
    assert purchase["properties"]["value"] == 30.5
    assert purchase["properties"]["currency"] == "EUR"
    assert purchase["properties"]["contents"] == [
        {"content_id": "SKU-1", "price": 30.5, "quantity": 1}
    ]
    assert purchase["page"] == {"url": "https://shop.example/thanks"}
    # A hit without traits of its own: the identity cookie's hashes only.
    assert page["event"] == "PageView"
    assert page["user"] == {
        "ttp": "ttp-old-1",
        "ttclid": "E.C.P.oldclick",
        "external_id": [anonymous_hash],
        "city": CITY_HASH,
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0 (Old; Record)",
        "locale": "de-DE",
    }
    assert page["page"] == {"url": "https://shop.example/", "referrer": "https://www.tiktok.com/"}
