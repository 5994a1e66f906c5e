"""The former per-integration queue file moves onto the hit log: on start, and by `gateway
migrate`.

`tests/data/queue-v1.db` was written by the queue of the version before the hit log (commit
bd127c6, `gateway/queue/sqlite.py`, schema 1): two integrations; `int_a` with two events
delivered, one released for a retry after an HTTP 503, one dead-lettered and one still queued;
`int_b` with three queued, one of them leased by a worker that died, and one event set aside at
collection (a purchase without value). Its times lie in September 2026: each test moves them to
today on its copy, so TikTok's seven-day window does not make the events too old to send.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from gateway.config.sqlite import SQLiteConfigStore
from gateway.core.crypto import SecretBox
from gateway.core.settings import Secret
from tests.conftest import MakeGateway
from tests.test_migrate import run_cli
from tests.test_store import integration, source
from tests.tiktok_double import TikTokDouble

FILE = Path(__file__).parent / "data" / "queue-v1.db"
SECRET = "migrate-queue-secret-0123456789-abcdefgh"
QUEUED = {"evt_a2", "evt_a4", "evt_b0", "evt_b1", "evt_b2"}


async def _prepare(data_dir: Path) -> None:
    """The configuration the old file's integrations belong to, and the file, moved to today."""
    await asyncio.to_thread(data_dir.mkdir, mode=0o700, parents=True, exist_ok=True)
    store = SQLiteConfigStore(data_dir / "config.db", SecretBox([Secret(SECRET)], "access-token"))
    await store.open()
    try:
        await store.create_source(source("src_a"))
        for integration_id in ("int_a", "int_b"):
            await store.create_integration(integration(integration_id, "src_a"))
    finally:
        await store.close()
    await asyncio.to_thread(_copy_moved_to_today, data_dir / "queue.db")


def _copy_moved_to_today(target: Path) -> None:
    shutil.copyfile(FILE, target)
    now = int(time.time())
    conn = sqlite3.connect(target)
    with conn:
        for table in ("events", "dead_letters"):
            conn.execute(
                f"UPDATE {table} SET event_time = ?,"
                " payload = CAST(json_set(CAST(payload AS TEXT), '$.event_time', ?) AS BLOB)",
                (now, now),
            )
    conn.close()


async def test_the_old_queue_file_is_moved_onto_the_log_on_start(
    make_gateway: MakeGateway, tiktok: TikTokDouble, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    await _prepare(data_dir)
    async with make_gateway(GATEWAY_SECRET_KEY=SECRET) as gw:
        await gw.delivered()
        assert sorted(tiktok.accepted_ids()) == sorted(QUEUED)
        assert not (data_dir / "queue.db").exists()
        assert (data_dir / "queue.db.migrated").exists()

        dead = await _dead_letters(gw, "int_a")
        assert [(d["event_id"], d["reason"], d["answer"]) for d in dead] == [
            ("evt_a3", "rejected", "40002: bad event")
        ]
        dead = await _dead_letters(gw, "int_b")
        assert [(d["event_id"], d["reason"]) for d in dead] == [
            ("evt_b_nov", "missing_value_or_currency")
        ]
        status = (await (await gw.admin.get("/v1/admin/integrations/int_a")).json())["status"]
        # The old counters carried over, and the two events sent since added to them.
        assert (status["delivered"], status["failed"], status["dead_lettered"]) == (4, 1, 1)
        assert status["queued"] == 0

    # A second start finds nothing to migrate and sends nothing again.
    async with make_gateway(GATEWAY_SECRET_KEY=SECRET) as gw:
        await gw.delivered()
        assert sorted(tiktok.accepted_ids()) == sorted(QUEUED)


async def test_gateway_migrate_moves_the_file_by_hand_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await _prepare(data_dir)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_SECRET_KEY": SECRET,
        "GATEWAY_ADMIN_TOKEN": "migrate-admin-token-0123456789",
        "PYTHONPATH": str(Path(__file__).parent.parent),
    }
    code, out, err = await run_cli("migrate", env=env)
    assert code == 0, err
    assert "moved 5 queued events and 2 dead letters" in out
    assert (data_dir / "queue.db.migrated").exists()
    assert (data_dir / "hitlog.db").exists()

    code, out, _ = await run_cli("migrate", env=env)
    assert (code, out.strip()) == (0, "no former queue file to migrate")


async def _dead_letters(gw: Any, integration_id: str) -> list[dict[str, Any]]:
    resp = await gw.admin.get(f"/v1/admin/integrations/{integration_id}/dead-letters")
    assert resp.status == 200, await resp.text()
    return list((await resp.json())["dead_letters"])
