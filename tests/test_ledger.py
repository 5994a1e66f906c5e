"""The debugger's store: claims, batches and failures (never a row per delivered event),
written behind the hot path, bounded, tailable; and what the debugger shows from it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sqlite3
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.collect.route import consent_allows
from gateway.core.hashing import hash_email, hash_external_id
from gateway.core.models import ConsentDefault, Integration
from gateway.core.settings import Secret
from gateway.destinations.tiktok.config import TikTokConfig
from gateway.ledger.base import (
    DEAD_LETTERED,
    DELIVERED,
    DENIED,
    GRANTED,
    IDENTIFIED,
    MATCH_SIGNALS,
    NOT_SENT,
    QUEUED,
    RETRYING,
    SIGNALS,
    Claim,
    Failure,
    SentBatch,
    TikTokReply,
    consent_decision,
    explain_consent,
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


def _payload(event_id: str, user: dict[str, Any] | None = None) -> bytes:
    body = {"event": "PageView", "event_id": event_id, "user": user or {"ttp": "t", "ip": "1.2"}}
    return json.dumps(body).encode()


@dataclass(frozen=True)
class _Sent:
    """An event as the worker hands it to the ledger (what `models.ClaimedEvent` carries)."""

    event_id: str
    payload: bytes
    attempts: int = 1
    enqueued_at: float = 1_700_000_000.0
    user_id_known: bool = False
    first_send: bool = True


OK = TikTokReply(200, 0, "OK", "req-1")


def _batch(*event_ids: str, status: str = DELIVERED, at: float = 1_700_000_001.0) -> SentBatch:
    events = [_Sent(e, _payload(e)) for e in event_ids]
    body = {"data": [json.loads(e.payload) for e in events]}
    return SentBatch("int_a", at, status, OK, events, lambda: json.dumps(body).encode())


def _claim(*event_ids: str, integration_id: str = "int_a", denied: int = 0) -> Claim:
    at = 1_700_000_000.0
    return Claim(integration_id, "src_a", at, list(event_ids), at, at, denied=denied)


def _failure(event_id: str, status: str = RETRYING, **fields: Any) -> Failure:
    values: dict[str, Any] = {
        "integration_id": "int_a",
        "event_id": event_id,
        "status": status,
        "reason": "TikTok answered 503",
        "answer": TikTokReply(503, None, "down", None),
        "attempts": 1,
        "at": 1_700_000_001.0,
        "received_at": 1_700_000_000.0,
    }
    values.update(fields)
    return Failure(**values)


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
    assert consent_decision(integration, consent, default) == decision  # delivery's shortcut
    assert reason


# ---------------------------------------------------------------------------------- the store


async def test_rows_are_buffered_and_flushed_in_order(ledger: SQLiteLedger) -> None:
    ledger.note([_claim("e1", "e2"), _batch("e1", "e2"), _failure("e3")])
    assert await ledger.changes(0, 10) == []  # nothing waited on the write
    await ledger.flush()
    rows = await ledger.changes(0, 10)
    assert [(r.kind, r.event_ids) for r in rows] == [
        ("claim", ["e1", "e2"]),
        ("batch", []),
        ("failure", ["e3"]),
    ]
    assert rows[0].seq < rows[1].seq < rows[2].seq
    assert await ledger.last_seq() == rows[-1].seq
    # A batch keeps its exact body (compressed on disk), and the answer.
    assert rows[1].body is not None and json.loads(rows[1].body)["data"][1]["event_id"] == "e2"
    assert rows[1].answer == {"http_status": 200, "code": 0, "message": "OK", "request_id": "req-1"}
    assert rows[2].answer is not None and rows[2].answer["http_status"] == 503


async def test_the_buffer_is_bounded_by_bytes_and_keeps_the_newest(tmp_path: Path) -> None:
    ledger = SQLiteLedger(
        tmp_path / "l.db",
        retention_s=3600,
        max_records=1000,
        linger_s=60.0,
        max_buffered_bytes=20_000,  # a few dozen rows
        clock=Clock(),
    )
    await ledger.open()
    try:
        ledger.note([_failure(f"e{i}") for i in range(100)])
        ledger.note([_batch("e99")])
        assert 0 < ledger.buffered_bytes <= 20_000
        kept = 101 - ledger.dropped
        assert 0 < kept < 100
        await ledger.flush()
        assert ledger.buffered_bytes == 0
        # What /metrics says: the drops are visible to an operator.
        registry = CollectorRegistry()
        registry.register(ledger.metrics())
        assert registry.get_sample_value("gateway_ledger_records_dropped_total") == 101 - kept
        assert registry.get_sample_value("gateway_ledger_records_written_total") == kept
        rows = await ledger.changes(0, 1000)
        assert [r.event_ids for r in rows[:-1]] == [[f"e{i}"] for i in range(101 - kept, 100)]
        assert rows[-1].kind == "batch"
    finally:
        await ledger.close()


async def test_a_long_buffer_is_written_in_steps_in_order(
    ledger: SQLiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.ledger.sqlite.WRITE_BATCH", 7)
    for i in range(20):
        ledger.note([_failure(f"e{i}")])
        if i % 3 == 0:
            ledger.note([_batch(f"e{i}")])
    await ledger.flush()
    assert ledger.written == 27
    rows = await ledger.changes(0, 100)
    assert len(rows) == 27
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert [r.event_ids[0] for r in rows if r.kind == "failure"] == [f"e{i}" for i in range(20)]


async def test_the_background_writer_flushes_without_being_asked(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db", retention_s=3600, max_records=10, linger_s=0.0)
    await ledger.open()
    try:
        # The real clock here, or the retention sweep would take the row for an old one.
        ledger.note([_failure("e1", at=time.time())])
        for _ in range(200):
            if await ledger.changes(0, 10):
                break
            await asyncio.sleep(0.01)
        assert [r.event_ids for r in await ledger.changes(0, 10)] == [["e1"]]
    finally:
        await ledger.close()


async def test_close_writes_what_is_buffered(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    ledger = SQLiteLedger(path, retention_s=3600, max_records=10, linger_s=10.0)
    await ledger.open()
    ledger.note([_failure("e1")])
    await ledger.close()
    again = SQLiteLedger(path, retention_s=3600, max_records=10)
    await again.open()
    try:
        assert [r.event_ids for r in await again.changes(0, 10)] == [["e1"]]
    finally:
        await again.close()


async def test_an_event_s_latest_failure_and_its_batches_by_receive_time(
    ledger: SQLiteLedger,
) -> None:
    """What the debugger finds an event's state by, without a row per event."""
    ledger.note(
        [
            _failure("e1", RETRYING),
            _failure("e1", DEAD_LETTERED, reason="rejected"),
            _batch("e1", "e2", at=1_700_000_002.0),
        ]
    )
    await ledger.flush()
    failures = await ledger.failures("int_a", ["e1", "e2"])
    assert set(failures) == {"e1"}
    assert failures["e1"].status == DEAD_LETTERED and failures["e1"].reason == "rejected"
    (batch,) = await ledger.batches("int_a", 1_699_999_999.0, 1_700_000_000.5)
    assert batch.seq > failures["e1"].seq
    assert await ledger.batches("int_a", 1_700_000_100.0, 1_700_000_200.0) == []
    assert await ledger.batches("int_b", 0.0, 2e9) == []


async def test_tailing_by_integration(ledger: SQLiteLedger) -> None:
    ledger.note([_claim("e1"), _claim("e2", integration_id="int_b")])
    await ledger.flush()
    assert [r.event_ids for r in await ledger.changes(0, 10, "int_b")] == [["e2"]]
    cursor = await ledger.last_seq()
    assert await ledger.changes(cursor, 10) == []
    ledger.note([_batch("e1")])
    await ledger.flush()
    assert [r.kind for r in await ledger.changes(cursor, 10)] == ["batch"]
    assert await ledger.claimed("int_a", 1_699_999_999.0, 1_700_000_001.0) == {"e1"}


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
        ledger.note([_failure("old", at=clock.now - 7200)])
        ledger.note([_failure(f"e{i}", at=clock.now) for i in range(5)])
        for _ in range(300):
            ids = [r.event_ids[0] for r in await ledger.changes(0, 10)]
            if ids == ["e2", "e3", "e4"]:
                break
            await asyncio.sleep(0.01)
        assert ids == ["e2", "e3", "e4"]
    finally:
        await ledger.close()


async def test_match_quality_counts_signals_of_events_at_their_first_send(
    ledger: SQLiteLedger,
) -> None:
    full = {name: "x" for name in SIGNALS}
    anonymous = {"ttp": "t", "external_id": ["a" * 64]}
    events = [
        _Sent("e1", _payload("e1", full), user_id_known=True),
        _Sent("e2", _payload("e2", {"ttp": "t"})),
        _Sent("e5", _payload("e5", anonymous)),
        _Sent("e6", _payload("e6", full), attempts=2, first_send=False),  # a retry: counted before
    ]
    body = b'{"data": []}'
    ledger.note(
        [
            SentBatch("int_a", 1_700_000_001.0, DELIVERED, OK, events, lambda: body),
            SentBatch("int_b", 1_700_000_001.0, DELIVERED, OK, events[:1], lambda: body),
            # Refused by the transform: stored to send, never sent.
            _failure("e7", DEAD_LETTERED, payload=_payload("e7", {"ttp": "t"})),
            _failure("e8", RETRYING),  # its batch counted it
        ]
    )
    await ledger.flush()
    quality = await ledger.match_quality("int_a", 0)
    assert quality.events == 4
    expected = {name: 1 for name in SIGNALS} | {"ttp": 4, "external_id": 2}
    # external_id split: e1 carried a user id, e5 only the anonymous id.
    assert quality.counts == expected | {"external_id_user": 1, "external_id_anonymous": 1}
    assert set(quality.counts) == set(MATCH_SIGNALS)
    assert (await ledger.match_quality("int_a", 1_800_000_000.0)).events == 0


async def test_a_body_that_cannot_be_rendered_costs_only_its_batch(ledger: SQLiteLedger) -> None:
    def broken() -> bytes:
        raise ValueError("not JSON-able")

    events = [_Sent("e-broken", _payload("e-broken"))]
    ledger.note([SentBatch("int_a", 1.0, DELIVERED, OK, events, broken), _failure("e-fine")])
    await ledger.flush()
    assert [r.event_ids for r in await ledger.changes(0, 10)] == [["e-fine"]]


async def test_a_ledger_file_of_schema_1_drops_its_per_event_tables(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta VALUES ('schema_version', 1), ('seq', 1);
        CREATE TABLE records (event_id TEXT NOT NULL, integration_id TEXT NOT NULL,
            seq INTEGER NOT NULL, status TEXT NOT NULL, updated_at REAL NOT NULL, raw TEXT,
            PRIMARY KEY (event_id, integration_id));
        CREATE TABLE raw_hits (event_id TEXT PRIMARY KEY, raw TEXT NOT NULL);
        INSERT INTO records VALUES ('old-1', 'int_a', 1, 'delivered', 1700000000.0, '{}');
        """
    )
    old.commit()
    old.close()
    ledger = SQLiteLedger(path, retention_s=3600, max_records=1000, linger_s=60.0, clock=Clock())
    await ledger.open()
    try:
        ledger.note([_failure("new-1")])
        await ledger.flush()
        assert [r.event_ids for r in await ledger.changes(0, 10)] == [["new-1"]]
    finally:
        await ledger.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert "records" not in tables and "raw_hits" not in tables
    assert version == (2,)


async def test_dropping_and_writing_rows_give_back_their_bytes_exactly(tmp_path: Path) -> None:
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
        for i in range(40):  # the oldest are dropped
            ledger.note([_claim(f"e{i}", f"f{i}"), _batch(f"e{i}", f"f{i}"), _failure(f"f{i}")])
        assert ledger.dropped > 0
        await ledger.flush()
        assert ledger.buffered_bytes == 0
    finally:
        await ledger.close()


# ------------------------------------------------------------------------------ from collection


async def _records(gateway: Gateway, event_id: str) -> list[dict[str, Any]]:
    await gateway.wired.ledger.flush()
    resp = await gateway.admin.get(f"/v1/admin/events/{event_id}")
    assert resp.status == 200, await resp.text()
    return list((await resp.json())["records"])


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
    await gateway.delivered()
    records = {r["integration_id"]: r for r in await _records(gateway, "ORD-1")}
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

    raw = _file_bytes(gateway.data_dir / "ledger.db")
    raw += b"".join(_bodies(gateway.data_dir / "ledger.db"))
    assert b"Jane" not in raw and b"example.com" not in raw.lower().replace(b"shop.example", b"")
    # The raw phone in its forms, not a bare "555", which binary pages and hashes may contain.
    for form in (PHONE.encode(), b"(555) 123-4567", b"5551234567", b"+15551234567"):
        assert form not in raw


async def test_a_source_without_integrations_says_so(gateway: Gateway) -> None:
    await gateway.create_source()
    resp = await gateway.collect.post("/v1/p", json={"source_id": "src_test", "message_id": "m-1"})
    assert resp.status == 200
    (record,) = await _records(gateway, "m-1")
    assert record["integration_id"] is None
    assert record["consent"]["decision"] == "no_integration"
    assert record["delivery"]["status"] == NOT_SENT


async def test_identify_hits_are_listed_with_their_hashed_traits(gateway: Gateway) -> None:
    await gateway.create_source()
    integration = await gateway.create_integration()
    resp = await gateway.collect.post(
        "/v1/i",
        json={
            "source_id": "src_test",
            "message_id": "ident-7",
            "user_id": "u-7",
            "traits": {"email": EMAIL},
            "context": {"consent": {"advertising": True}},
        },
    )
    assert resp.status == 200
    await gateway.delivered()
    listing = await (await gateway.admin.get("/v1/admin/events")).json()
    (record,) = listing["records"]
    assert record["event_id"] == "ident-7"
    assert record["integration_id"] == integration["id"]
    assert record["delivery"]["status"] == IDENTIFIED
    assert record["payload"] is None
    identity = record["hit"]["identity"]
    assert identity["user_id"] == hash_external_id("u-7")
    assert identity["email"] == [hash_email(EMAIL)]
    assert EMAIL.lower() not in json.dumps(record).lower()


# -------------------------------------------------------------------------------- from delivery


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


async def test_delivery_outcomes_reach_the_debugger(gateway: Gateway, tiktok: TikTokDouble) -> None:
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


async def test_a_resent_hit_shows_its_latest_fate(gateway: Gateway, tiktok: TikTokDouble) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    worker = gateway.wired.worker
    assert worker is not None
    await _send_page(gateway, "m-twice")
    await worker.drain(10)
    (record,) = await _records(gateway, "m-twice")
    assert record["delivery"]["status"] == DELIVERED
    tiktok.play(Answer(status=503, message="down"))
    await _send_page(gateway, "m-twice")  # the same event id again
    await tiktok.wait_for(lambda: len(tiktok.requests) >= 2)
    for _ in range(200):
        (record,) = await _records(gateway, "m-twice")
        if record["delivery"]["status"] == RETRYING:
            break
        await asyncio.sleep(0.01)
    assert record["delivery"]["status"] == RETRYING


async def test_a_rejected_event_is_dead_lettered_with_tiktoks_answer(
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
    (record,) = await _records(gateway, "m-bad")
    assert record["delivery"]["status"] in (QUEUED, DELIVERED)
    await worker.drain(10)
    (record,) = await _records(gateway, "m-bad")
    assert record["delivery"]["status"] == DELIVERED
    assert record["delivery"]["answer"]["code"] == 0


async def test_delivered_events_leave_no_row_of_their_own(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    for i in range(40):
        await _send_page(gateway, f"m-{i}")
    await gateway.delivered()
    await gateway.wired.ledger.flush()
    assert len(tiktok.accepted_ids()) == 40
    with contextlib.closing(sqlite3.connect(gateway.data_dir / "ledger.db")) as db:
        kinds = dict(db.execute("SELECT kind, count(*) FROM changes GROUP BY kind").fetchall())
    # A row per request and per read of the log, none per event: fewer rows than events.
    assert kinds.get("batch") == len(tiktok.requests)
    assert kinds.get("failure", 0) == 0
    assert kinds["batch"] + kinds.get("claim", 0) < 40
    # Every one of them is still shown, delivered, with its request's answer.
    for i in (0, 39):
        (record,) = await _records(gateway, f"m-{i}")
        assert record["delivery"]["status"] == DELIVERED


async def test_the_payload_shown_is_what_tiktok_received(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    for i in range(5):
        await _send_page(gateway, f"m-{i}")
    await gateway.delivered()
    received = {e["event_id"]: e for r in tiktok.requests for e in r.events}
    for i in range(5):
        (record,) = await _records(gateway, f"m-{i}")
        assert record["payload"] == received[f"m-{i}"]


async def test_a_hit_not_read_yet_shows_the_payload_its_integration_will_send(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    integration = await gateway.create_integration()
    resp = await gateway.admin.post(f"/v1/admin/integrations/{integration['id']}/pause")
    assert resp.status == 200
    await _send_page(gateway, "m-waiting")
    (record,) = await _records(gateway, "m-waiting")
    assert record["delivery"]["status"] == QUEUED
    assert record["payload"]["event_id"] == "m-waiting"
    assert record["request"]["data"] == [record["payload"]]
    assert tiktok.requests == []
    await gateway.admin.post(f"/v1/admin/integrations/{integration['id']}/resume")
    await gateway.delivered()
    (sent,) = [e for r in tiktok.requests for e in r.events]
    assert sent == record["payload"]  # recomputed as the transform made it when it was read


def _file_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


def _bodies(path: Path) -> list[bytes]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [zlib.decompress(b) for (b,) in db.execute("SELECT body FROM changes") if b]
