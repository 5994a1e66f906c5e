"""The ledger: per-event records, written in batches behind the hot path, bounded, tailable."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.collect.route import consent_allows
from gateway.core.models import ConsentDefault, Integration
from gateway.core.settings import Secret
from gateway.destinations.tiktok.config import TikTokConfig
from gateway.ledger.base import (
    DELIVERED,
    DENIED,
    GRANTED,
    MATCH_SIGNALS,
    NOT_SENT,
    QUEUED,
    RETRYING,
    SIGNALS,
    Filters,
    Observation,
    Outcome,
    RawHit,
    TikTokReply,
    explain_consent,
    hit_summary,
)
from gateway.ledger.sqlite import SQLiteLedger
from tests.conftest import Gateway
from tests.tiktok_double import Answer, TikTokDouble

EMAIL = "Jane.Doe@Example.com"
PHONE = "+1 (555) 123-4567"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _observation(event_id: str, integration_id: str | None = "int_a", **fields: Any) -> Observation:
    payload = {"event": "PageView", "event_id": event_id, "user": {"ttp": "t", "ip": "1.2.3.4"}}
    values: dict[str, Any] = {
        "event_id": event_id,
        "integration_id": integration_id,
        "source_id": "src_a",
        "hit": hit_summary("page", None, "src_a", "https://shop.example/", None, False),
        "decision": GRANTED,
        "decision_reason": "granted: advertising",
        "tiktok_event": "PageView",
        "payload": json.dumps(payload).encode(),
        "status": QUEUED,
        "reason": None,
        "received_at": 1_700_000_000.0,
    }
    values.update(fields)
    return Observation(**values)


@pytest.fixture
async def ledger(tmp_path: Path) -> Any:
    clock = Clock()
    ledger = SQLiteLedger(
        # A long linger: these tests flush themselves, so they see what the buffer holds.
        tmp_path / "ledger.db",
        retention_s=3600,
        max_records=1000,
        linger_s=60.0,
        clock=clock,
    )
    await ledger.open()
    try:
        yield ledger
    finally:
        await ledger.close()


# ------------------------------------------------------------------------------------ consent

CATEGORY_SETS = [(), ("advertising",), ("advertising", "analytics")]
CONSENTS: list[dict[str, bool] | None] = [
    None,
    {},
    {"advertising": True},
    {"advertising": False},
    {"advertising": True, "analytics": True},
    {"analytics": True},
]


@pytest.mark.parametrize(
    ("categories", "consent", "default"),
    list(itertools.product(CATEGORY_SETS, CONSENTS, list(ConsentDefault))),
)
def test_explain_consent_agrees_with_the_router(
    categories: tuple[str, ...], consent: dict[str, bool] | None, default: ConsentDefault
) -> None:
    integration = Integration(
        id="int_a",
        source_id="src_a",
        name="x",
        config=TikTokConfig("CPIXEL", Secret("tok")),
        consent_categories=categories,
    )
    decision, reason = explain_consent(integration, consent, default)
    assert (decision == GRANTED) == consent_allows(integration, consent, default)
    assert reason


# ---------------------------------------------------------------------------------- the store


async def test_observe_is_buffered_and_flushed_in_order(ledger: SQLiteLedger) -> None:
    ledger.observe([_observation("e1"), _observation("e2")])
    ledger.settle([Outcome("e1", "int_a", DELIVERED, 1, 1_700_000_001.0)])
    assert await ledger.records(Filters(), 10) == []  # nothing waited on the write
    await ledger.flush()
    records = await ledger.records(Filters(), 10)
    assert [(r["event_id"], r["delivery"]["status"]) for r in records] == [
        ("e1", DELIVERED),
        ("e2", QUEUED),
    ]
    assert records[0]["seq"] > records[1]["seq"]  # newest change first
    assert records[0]["payload"]["event_id"] == "e1"
    assert records[0]["consent"] == {"decision": GRANTED, "reason": "granted: advertising"}
    assert await ledger.last_seq() == records[0]["seq"]


async def test_the_buffer_is_bounded_by_bytes_and_keeps_the_newest(tmp_path: Path) -> None:
    ledger = SQLiteLedger(
        tmp_path / "l.db",
        retention_s=3600,
        max_records=1000,
        linger_s=60.0,
        max_buffered_bytes=20_000,  # a dozen or so observations
        clock=Clock(),
    )
    await ledger.open()
    try:
        ledger.observe([_observation(f"e{i}") for i in range(100)])
        ledger.settle([Outcome("e99", "int_a", DELIVERED, 1, 1_700_000_001.0)])
        assert 0 < ledger.buffered_bytes <= 20_000
        kept = 101 - ledger.dropped
        assert 0 < kept < 50
        await ledger.flush()
        assert ledger.buffered_bytes == 0
        # What /metrics says: the drops are visible to an operator.
        registry = CollectorRegistry()
        registry.register(ledger.metrics())
        assert registry.get_sample_value("gateway_ledger_records_dropped_total") == 101 - kept
        assert registry.get_sample_value("gateway_ledger_records_written_total") == kept
        records = await ledger.records(Filters(), 1000)
        assert [r["event_id"] for r in records] == ["e99"] + [
            f"e{i}" for i in range(98, 100 - kept, -1)
        ]
        assert records[0]["delivery"]["status"] == DELIVERED
    finally:
        await ledger.close()


async def test_a_long_buffer_is_written_in_steps_in_order(
    ledger: SQLiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.ledger.sqlite.WRITE_BATCH", 7)
    answer = TikTokReply(200, 0, "OK", "req-1")
    for i in range(20):
        ledger.observe([_observation(f"e{i}")])
        if i % 3 == 0:
            ledger.settle([Outcome(f"e{i}", "int_a", DELIVERED, 1, 1_700_000_001.0, answer=answer)])
    await ledger.flush()
    assert ledger.written == 27
    records = await ledger.records(Filters(), 100)
    assert len(records) == 20
    assert [r["seq"] for r in records] == sorted((r["seq"] for r in records), reverse=True)
    delivered = {r["event_id"] for r in records if r["delivery"]["status"] == DELIVERED}
    assert delivered == {f"e{i}" for i in range(0, 20, 3)}
    assert all(
        r["delivery"]["answer"]["request_id"] == "req-1"
        for r in records
        if r["event_id"] in delivered
    )


async def test_the_background_writer_flushes_without_being_asked(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db", retention_s=3600, max_records=10, linger_s=0.0)
    await ledger.open()
    try:
        # The real clock here, or the retention sweep would take the record for an old one.
        ledger.observe([_observation("e1", received_at=time.time())])
        for _ in range(200):
            if await ledger.records(Filters(), 10):
                break
            await asyncio.sleep(0.01)
        assert [r["event_id"] for r in await ledger.records(Filters(), 10)] == ["e1"]
    finally:
        await ledger.close()


async def test_close_writes_what_is_buffered(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    ledger = SQLiteLedger(path, retention_s=3600, max_records=10, linger_s=10.0)
    await ledger.open()
    ledger.observe([_observation("e1")])
    await ledger.close()
    again = SQLiteLedger(path, retention_s=3600, max_records=10)
    await again.open()
    try:
        assert [r["event_id"] for r in await again.records(Filters(), 10)] == ["e1"]
    finally:
        await again.close()


async def test_an_outcome_written_before_its_observation_is_kept(ledger: SQLiteLedger) -> None:
    """Another process's delivery worker may flush before collection's buffer does."""
    answer = TikTokReply(200, 0, "OK", "req-1")
    ledger.settle([Outcome("e1", "int_a", DELIVERED, 1, 1_700_000_001.0, answer=answer)])
    await ledger.flush()
    ledger.observe([_observation("e1")])
    await ledger.flush()
    (record,) = await ledger.records(Filters(), 10)
    assert record["delivery"]["status"] == DELIVERED
    assert record["delivery"]["answer"] == {
        "http_status": 200,
        "code": 0,
        "message": "OK",
        "request_id": "req-1",
    }
    assert record["hit"]["page_url"] == "https://shop.example/"


async def test_a_resent_event_id_starts_afresh(ledger: SQLiteLedger) -> None:
    ledger.observe([_observation("e1")])
    ledger.settle([Outcome("e1", "int_a", RETRYING, 2, 1_700_000_001.0)])
    await ledger.flush()
    ledger.observe([_observation("e1")])
    await ledger.flush()
    (record,) = await ledger.records(Filters(), 10)
    assert record["delivery"]["status"] == QUEUED
    assert record["delivery"]["attempts"] == 0


async def test_filters_and_tailing(ledger: SQLiteLedger) -> None:
    ledger.observe(
        [
            _observation("e1"),
            _observation("e2", "int_b", source_id="src_b", tiktok_event="CompletePayment"),
            _observation("e3", None, decision="no_integration", payload=None, status=NOT_SENT),
        ]
    )
    await ledger.flush()
    assert [r["event_id"] for r in await ledger.records(Filters(integration_id="int_b"), 10)] == [
        "e2"
    ]
    assert [r["event_id"] for r in await ledger.records(Filters(source_id="src_b"), 10)] == ["e2"]
    assert [r["event_id"] for r in await ledger.records(Filters(event="CompletePayment"), 10)] == [
        "e2"
    ]
    assert [r["event_id"] for r in await ledger.records(Filters(event_id="e3"), 10)] == ["e3"]
    (e3,) = await ledger.records(Filters(event_id="e3"), 10)
    assert e3["integration_id"] is None and e3["payload"] is None

    cursor = await ledger.last_seq()
    assert await ledger.records(Filters(), 10, after=cursor) == []
    ledger.settle([Outcome("e1", "int_a", DELIVERED, 1, 1_700_000_002.0)])
    await ledger.flush()
    changed = await ledger.records(Filters(), 10, after=cursor)
    assert [(r["event_id"], r["delivery"]["status"]) for r in changed] == [("e1", DELIVERED)]


async def test_retention_by_age_and_by_count(tmp_path: Path) -> None:
    clock = Clock()
    ledger = SQLiteLedger(
        tmp_path / "l.db",
        retention_s=3600,
        max_records=3,
        linger_s=0.0,
        sweep_interval_s=0.0,
        clock=clock,
    )
    await ledger.open()
    try:
        ledger.observe([_observation("old", received_at=clock.now - 7200)])
        ledger.observe([_observation(f"e{i}", received_at=clock.now) for i in range(5)])
        for _ in range(300):
            ids = [r["event_id"] for r in await ledger.records(Filters(), 10)]
            if ids == ["e4", "e3", "e2"]:
                break
            await asyncio.sleep(0.01)
        assert ids == ["e4", "e3", "e2"]
    finally:
        await ledger.close()


async def test_match_quality_counts_signals_of_sent_events(ledger: SQLiteLedger) -> None:
    full = {name: "x" for name in SIGNALS}
    anonymous = {"ttp": "t", "external_id": ["a" * 64]}
    ledger.observe(
        [
            _observation("e1", payload=json.dumps({"user": full}).encode(), user_id_known=True),
            _observation("e2", payload=json.dumps({"user": {"ttp": "t"}}).encode()),
            _observation("e3", decision=DENIED, payload=None, status=NOT_SENT),
            _observation("e4", "int_b", payload=json.dumps({"user": full}).encode()),
            _observation("e5", payload=json.dumps({"user": anonymous}).encode()),
        ]
    )
    await ledger.flush()
    quality = await ledger.match_quality("int_a", 0)
    assert quality.events == 3
    expected = {name: 1 for name in SIGNALS} | {"ttp": 3, "external_id": 2}
    # external_id split: e1 carried a user id, e5 only the anonymous id.
    assert quality.counts == expected | {"external_id_user": 1, "external_id_anonymous": 1}
    assert set(quality.counts) == set(MATCH_SIGNALS)
    assert (await ledger.match_quality("int_a", 1_800_000_000.0)).events == 0


# ------------------------------------------------------------------------------ from collection


async def test_a_hit_leaves_a_record_per_integration_with_pii_hashed(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    sent = await gateway.create_integration()
    kept_out = await gateway.create_integration(name="Analytics", consent_categories=["analytics"])
    resp = await gateway.collect.post(
        "/v1/t",
        json={
            "source_id": "src_test",
            "event": "Order Completed",
            "message_id": "ORD-1",
            "traits": {"email": EMAIL, "phone": PHONE},
            "properties": {"order_id": "ORD-1", "total": 10, "currency": "usd"},
            "context": {
                "consent": {"advertising": True},
                "page": {"url": "https://shop.example/thanks"},
            },
        },
    )
    assert resp.status == 200
    await gateway.delivered()  # each integration records the hit when it reads it
    records = {r["integration_id"]: r for r in await gateway.wired.ledger.records(Filters(), 10)}
    assert set(records) == {sent["id"], kept_out["id"]}

    record = records[sent["id"]]
    assert record["event_id"] == "ORD-1"
    assert record["event"] == "Order Completed"
    assert record["tiktok_event"] == "CompletePayment"
    assert record["consent"]["decision"] == GRANTED
    assert record["hit"] == {
        "type": "track",
        "event": "Order Completed",
        "source_id": "src_test",
        "page_url": "https://shop.example/thanks",
        "consent": {"advertising": True},
        "from_server": False,
    }
    assert len(record["payload"]["user"]["email"]) == 64  # SHA-256 hex
    assert record["delivery"]["status"] == DELIVERED

    denied = records[kept_out["id"]]
    assert denied["consent"] == {"decision": DENIED, "reason": "no consent for analytics"}
    assert denied["payload"] is None
    assert denied["delivery"]["status"] == NOT_SENT
    assert denied["delivery"]["reason"] == "consent"

    raw = (gateway.data_dir / "ledger.db").read_bytes()
    for wal in gateway.data_dir.glob("ledger.db-wal"):
        raw += wal.read_bytes()
    assert b"Jane" not in raw and b"example.com" not in raw.lower().replace(b"shop.example", b"")
    # The raw phone in its forms, not a bare "555", which binary pages and hashes may contain.
    for form in (PHONE.encode(), b"(555) 123-4567", b"5551234567", b"+15551234567"):
        assert form not in raw


async def test_a_source_without_integrations_says_so(gateway: Gateway) -> None:
    await gateway.create_source()
    resp = await gateway.collect.post("/v1/p", json={"source_id": "src_test", "message_id": "m-1"})
    assert resp.status == 200
    await gateway.wired.ledger.flush()
    (record,) = await gateway.wired.ledger.records(Filters(), 10)
    assert record["integration_id"] is None
    assert record["consent"]["decision"] == "no_integration"
    assert record["delivery"]["status"] == NOT_SENT


# -------------------------------------------------------------------------------- from delivery


async def _records(gateway: Gateway, event_id: str) -> list[dict[str, Any]]:
    await gateway.wired.ledger.flush()
    return await gateway.wired.ledger.records(Filters(event_id=event_id), 10)


async def _send_page(gateway: Gateway, message_id: str) -> None:
    resp = await gateway.collect.post(
        "/v1/p",
        json={
            "source_id": "src_test",
            "message_id": message_id,
            "context": {"consent": {"advertising": True}},
        },
    )
    assert resp.status == 200


async def test_delivery_outcomes_reach_the_ledger(gateway: Gateway, tiktok: TikTokDouble) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    worker = gateway.wired.worker
    assert worker is not None

    tiktok.play(Answer(status=503, message="down"))
    await _send_page(gateway, "m-retry")
    await tiktok.wait_for(lambda: len(tiktok.requests) >= 1)
    for _ in range(200):
        (record,) = await _records(gateway, "m-retry")
        if record["delivery"]["status"] == RETRYING:
            break
        await asyncio.sleep(0.01)
    assert record["delivery"]["status"] == RETRYING
    assert record["delivery"]["answer"]["http_status"] == 503
    assert record["delivery"]["attempts"] == 1

    await worker.drain(10)
    (record,) = await _records(gateway, "m-retry")
    assert record["delivery"]["status"] == DELIVERED
    assert record["delivery"]["attempts"] == 2
    assert record["delivery"]["answer"]["code"] == 0


async def test_a_rejected_event_is_dead_lettered_in_the_ledger_with_tiktoks_answer(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    worker = gateway.wired.worker
    assert worker is not None
    tiktok.reject_event_ids.add("m-bad")
    await _send_page(gateway, "m-bad")
    await tiktok.wait_for(lambda: len(tiktok.requests) >= 1)
    await worker.drain(10)
    (record,) = await _records(gateway, "m-bad")
    assert record["delivery"]["status"] == "dead_lettered"
    assert record["delivery"]["reason"].startswith("rejected: 40002")
    assert record["delivery"]["answer"]["code"] == 40002

    # Replayed (the cause fixed), it is queued again, then delivered under the same event_id.
    tiktok.reject_event_ids.clear()
    integration_id = record["integration_id"]
    resp = await gateway.admin.post(
        f"/v1/admin/integrations/{integration_id}/dead-letters/replay", json={"all": True}
    )
    assert (await resp.json())["replayed"] == 1
    await worker.drain(10)
    (record,) = await _records(gateway, "m-bad")
    assert record["delivery"]["status"] == DELIVERED
    assert record["delivery"]["answer"]["code"] == 0


async def test_a_ledger_file_from_before_raw_hits_gains_the_column_and_keeps_its_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta VALUES ('schema_version', 1), ('seq', 1);
        CREATE TABLE records (
            event_id TEXT NOT NULL, integration_id TEXT NOT NULL, seq INTEGER NOT NULL,
            source_id TEXT, hit_event TEXT, tiktok_event TEXT, hit TEXT, decision TEXT,
            decision_reason TEXT, payload TEXT, signals INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL, reason TEXT, answer TEXT, attempts INTEGER NOT NULL DEFAULT 0,
            received_at REAL, updated_at REAL NOT NULL, PRIMARY KEY (event_id, integration_id));
        INSERT INTO records (event_id, integration_id, seq, status, updated_at)
            VALUES ('old-1', 'int_a', 1, 'delivered', 1700000000.0);
        """
    )
    old.commit()
    old.close()
    ledger = SQLiteLedger(path, retention_s=3600, max_records=1000, linger_s=60.0, clock=Clock())
    await ledger.open()
    try:
        rendered: list[int] = []

        def render() -> bytes:
            rendered.append(1)
            return b'{"hit": {"event": "Signed Up"}}'

        raw = RawHit(render)  # one per hit, shared by its integrations' records
        ledger.observe(
            [_observation("new-1", "int_a", raw=raw), _observation("new-1", "int_b", raw=raw)]
        )
        await ledger.flush()
        records = await ledger.records(Filters(), 10)
        by_key = {(r["event_id"], r["integration_id"]): r for r in records}
        assert by_key[("old-1", "int_a")]["raw"] is None
        assert by_key[("new-1", "int_a")]["raw"] == {"hit": {"event": "Signed Up"}}
        assert by_key[("new-1", "int_b")]["raw"] == {"hit": {"event": "Signed Up"}}
        assert rendered == [1]  # rendered once for both records
        stored = await ledger.raw_hits("int_b", 1_699_999_999.0, 1_700_000_001.0, 10)
        assert [s.event_id for s in stored] == ["new-1"]
    finally:
        await ledger.close()


async def test_a_raw_hit_that_cannot_be_rendered_costs_only_itself(ledger: SQLiteLedger) -> None:
    def broken() -> bytes:
        raise ValueError("not JSON-able")

    ledger.observe([_observation("e-broken", raw=RawHit(broken)), _observation("e-fine")])
    await ledger.flush()
    records = {r["event_id"]: r for r in await ledger.records(Filters(), 10)}
    assert records["e-broken"]["raw"] is None
    assert records["e-broken"]["payload"]["event_id"] == "e-broken"
    assert "e-fine" in records


def _file_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


async def test_a_hit_s_raw_json_is_stored_once_for_all_its_integrations_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    ledger = SQLiteLedger(path, retention_s=3600, max_records=1000, linger_s=60.0, clock=Clock())
    await ledger.open()
    try:
        raw = RawHit(lambda: b'{"hit": {"event": "Raw-Marker-7f3e"}}')
        ledger.observe(
            [_observation("e-1", integration, raw=raw) for integration in ("int_a", "int_b", "c")]
        )
        await ledger.flush()
        records = await ledger.records(Filters(event_id="e-1"), 10)
        assert [r["raw"] for r in records] == [{"hit": {"event": "Raw-Marker-7f3e"}}] * 3
        stored = await ledger.raw_hits("int_b", 1_699_999_999.0, 1_700_000_001.0, 10)
        assert [s.raw for s in stored] == ['{"hit": {"event": "Raw-Marker-7f3e"}}']
    finally:
        await ledger.close()
    # One transaction wrote it: every page is in the file once, so a copy per record would show.
    assert _file_bytes(path).count(b"Raw-Marker-7f3e") == 1


async def test_a_ledger_file_whose_records_kept_their_own_raw_hit_still_shows_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    ledger = SQLiteLedger(path, retention_s=3600, max_records=1000, linger_s=60.0, clock=Clock())
    await ledger.open()
    await ledger.close()
    old = sqlite3.connect(path)  # a record as the ledger wrote it before raw hits were shared
    old.execute(
        "INSERT INTO records (event_id, integration_id, seq, status, received_at, updated_at, raw)"
        " VALUES ('old-1', 'int_a', 1, 'delivered', 1700000000.0, 1700000000.0, ?)",
        ('{"hit": {"event": "Old"}}',),
    )
    old.commit()
    old.close()
    ledger = SQLiteLedger(path, retention_s=3600, max_records=1000, linger_s=60.0, clock=Clock())
    await ledger.open()
    try:
        (record,) = await ledger.records(Filters(event_id="old-1"), 10)
        assert record["raw"] == {"hit": {"event": "Old"}}
        stored = await ledger.raw_hits("int_a", 1_699_999_999.0, 1_700_000_001.0, 10)
        assert [s.raw for s in stored] == ['{"hit": {"event": "Old"}}']
    finally:
        await ledger.close()


async def test_the_buffer_counts_a_raw_hit_once_for_all_its_records(tmp_path: Path) -> None:
    def buffered(*hits: list[Observation]) -> int:
        ledger = SQLiteLedger(
            tmp_path / "l.db", retention_s=3600, max_records=1000, linger_s=60.0, clock=Clock()
        )
        for observations in hits:
            ledger.observe(observations)
        return ledger.buffered_bytes

    def hit(event_id: str, records: int, raw: RawHit | None) -> list[Observation]:
        return [_observation(event_id, f"int_{i}", raw=raw) for i in range(records)]

    one_raw = buffered(hit("e1", 1, RawHit(bytes))) - buffered(hit("e1", 1, None))
    assert one_raw > 0
    shared = RawHit(bytes)
    three_records = buffered(hit("e1", 3, shared)) - buffered(hit("e1", 3, None))
    assert three_records == one_raw
    two_hits = buffered(hit("e1", 3, RawHit(bytes)), hit("e2", 2, RawHit(bytes)))
    assert two_hits - buffered(hit("e1", 3, None), hit("e2", 2, None)) == 2 * one_raw


async def test_dropping_and_writing_records_give_back_their_raw_hit_s_bytes_exactly(
    tmp_path: Path,
) -> None:
    ledger = SQLiteLedger(
        tmp_path / "l.db",
        retention_s=3600,
        max_records=1000,
        linger_s=60.0,
        max_buffered_bytes=20_000,
        clock=Clock(),
    )
    await ledger.open()
    try:
        for i in range(40):  # the oldest are dropped, some hits half-way through their records
            raw = RawHit(bytes)
            ledger.observe([_observation(f"e{i}", f"int_{n}", raw=raw) for n in range(3)])
        assert ledger.dropped > 0
        await ledger.flush()
        assert ledger.buffered_bytes == 0
    finally:
        await ledger.close()
