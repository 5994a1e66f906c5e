"""From the former per-integration queue file (`queue.db`) to the hit log's consumers.

Before the hit log, collection stored each hit's transformed event per integration in
`queue.db`. Those events are TikTok-ready already, so they move as they are: queued ones into the
integration's retry set (due when they were due; one a dead worker held, at once), dead letters
into its dead letters, and its counters onto its consumer. The file is then renamed
`queue.db.migrated`, so a start never migrates it twice. `gateway migrate` runs this by hand; the
embedded default runs it on start when it finds the file.

A crash midway leaves the file in place, and the next run moves everything again: an event may
then be sent twice (TikTok drops the second by its event_id), never lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from gateway.config.base import ConfigStore
from gateway.deliver.consumers import StoredEvent
from gateway.log.base import FailedItem, HitLog

log = logging.getLogger(__name__)

MIGRATED_SUFFIX = ".migrated"
# The file is renamed to this first: of several processes starting at once only one gets it,
# and one that died midway leaves it for the next start.
MIGRATING_SUFFIX = ".migrating"
_encode = msgspec.msgpack.Encoder().encode


@dataclass(slots=True)
class MigratedQueue:
    """What one migration moved, per integration (and what it had to leave behind)."""

    queued: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    # Events of integrations deleted since: nobody would ever read them.
    orphaned: int = 0
    renamed_to: Path | None = None


@dataclass(slots=True)
class _OldQueue:
    events: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    stats: list[dict[str, Any]]


def claim_queue_file(path: Path) -> Path | None:
    """The old queue file, renamed so this process alone migrates it (None: there is none)."""
    migrating = path.with_name(path.name + MIGRATING_SUFFIX)
    if migrating.exists():
        return migrating  # a migration that died midway
    try:
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.rename(migrating.with_name(migrating.name + suffix))
        path.rename(migrating)
    except FileNotFoundError:
        return None
    path.with_name(path.name + "-writers.lock").unlink(missing_ok=True)
    return migrating


async def migrate_queue_file(
    path: Path, hitlog: HitLog, store: ConfigStore, now: float
) -> MigratedQueue:
    """Move the queued events, dead letters and counters of `path` (claimed with
    `claim_queue_file`) onto the log's consumers, then rename it `queue.db.migrated`."""
    old = await asyncio.to_thread(_read_old_queue, path)
    out = MigratedQueue()
    integrations = {i.id: i for i in await store.list_integrations()}
    for integration in integrations.values():
        await hitlog.add_consumer(integration.id, integration.source_id, "tail")
    for row in old.events:
        if row["integration_id"] not in integrations:
            out.orphaned += 1
            continue
        due = now if row["lease_until"] is not None else row["not_before"]
        await hitlog.retry_later(row["integration_id"], [_failed(row)], due, None)
        _count(out.queued, row["integration_id"])
    for row in old.dead_letters:
        if row["integration_id"] not in integrations:
            out.orphaned += 1
            continue
        await hitlog.dead_letter(
            row["integration_id"],
            [_failed(row)],
            row["reason"],
            row["answer"],
            row["dead_lettered_at"],
        )
        _count(out.dead_letters, row["integration_id"])
    for row in old.stats:
        if row["integration_id"] in integrations:
            await hitlog.add_counts(
                row["integration_id"],
                delivered=row["delivered"],
                failed=row["failed"],
                dead_lettered=out.dead_letters.get(row["integration_id"], 0),
                last_error=row["last_error"],
                success_at=row["last_success_at"],
            )
    out.renamed_to = await asyncio.to_thread(_set_aside, path)
    return out


def _failed(row: dict[str, Any]) -> FailedItem:
    consent = json.loads(row["consent"]) if row["consent"] else None
    stored = StoredEvent(
        row["event_name"],
        row["event_time"],
        bytes(row["payload"]),
        consent,
        row["enqueued_at"],
        row["first_attempt_at"],
        row["last_attempt_at"],
    )
    return FailedItem(_encode(stored), row["event_id"], None, attempts=row["attempts"])


def _count(counts: dict[str, int], integration_id: str) -> None:
    counts[integration_id] = counts.get(integration_id, 0) + 1


def _read_old_queue(path: Path) -> _OldQueue:
    # Read-write, so a WAL left by a process that was killed is recovered, not ignored.
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version != 1:
            raise ValueError(f"{path} is a queue file of schema {version}; this version reads 1")
        return _OldQueue(
            events=_rows(conn.execute("SELECT * FROM events ORDER BY id")),
            dead_letters=_rows(conn.execute("SELECT * FROM dead_letters ORDER BY id")),
            stats=_rows(conn.execute("SELECT * FROM stats")),
        )
    finally:
        conn.close()


def _rows(cursor: Iterable[sqlite3.Row]) -> list[dict[str, Any]]:
    return [dict(row) for row in cursor]


def _set_aside(path: Path) -> Path:
    """Rename the file (and its WAL files) so it is never migrated again; kept, not deleted."""
    original = path.name.removesuffix(MIGRATING_SUFFIX)
    target = path.with_name(original + MIGRATED_SUFFIX)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    path.rename(target)
    return target
