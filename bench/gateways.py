"""The gateway under test: a real `python -m gateway serve` on a fresh data dir, configured
through its Management API, and what the harness reads of it without asking it (the hit log's
backlog and the event ledger's progress, from their files).
"""

from __future__ import annotations

import sqlite3
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import workload
from bench.procs import Pinning, Proc, free_port, http, python_env, spawn, wait_http

PIXEL = "CBENCHPIXEL000000001"


@dataclass
class GatewayProc:
    proc: Proc
    collect_url: str
    admin_url: str
    data_dir: Path
    integration_id: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    # Events queued when the queue is not the data dir's SQLite file (Redis: the prefix's count).
    depth_fn: Callable[[], int] | None = None
    _db: sqlite3.Connection | None = None

    def depth(self) -> int:
        """Events queued, read from the queue's own counters (no request to the gateway)."""
        if self.depth_fn is not None:
            return self.depth_fn()
        if self._db is None:
            uri = f"file:{self.data_dir / 'queue.db'}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, timeout=5)
        try:
            row = self._db.execute("SELECT coalesce(sum(queued), 0) FROM stats").fetchone()
        except sqlite3.OperationalError:
            return -1
        return int(row[0])

    def queue_stats(self) -> dict[str, int]:
        self.depth()
        assert self._db is not None
        queued, delivered, failed = self._db.execute(
            "SELECT coalesce(sum(queued),0), coalesce(sum(delivered),0), coalesce(sum(failed),0)"
            " FROM stats"
        ).fetchone()
        (dead,) = self._db.execute("SELECT count(*) FROM dead_letters").fetchone()
        return {"queued": queued, "delivered": delivered, "failed": failed, "dead_lettered": dead}

    def ledger_counts(self) -> dict[str, float]:
        """The event debugger's records written and dropped (`/metrics`; {} if unreadable)."""
        request = urllib.request.Request(f"{self.admin_url}/metrics")
        request.add_header("Authorization", f"Bearer {workload.ADMIN_TOKEN}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                text = response.read().decode()
        except (OSError, urllib.error.URLError):
            return {}
        counts: dict[str, float] = {}
        for line in text.splitlines():
            for name in ("written", "dropped"):
                if line.startswith(f"gateway_ledger_records_{name}_total "):
                    counts[name] = float(line.split()[1])
        return counts

    def stop(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self.proc.stop()


def start_gateway(
    workdir: Path,
    name: str,
    tiktok_url: str,
    cpus: str | None,
    pin: Pinning,
    *,
    workers: int = 1,
    settings: dict[str, str] | None = None,
    rate_limit_rps: float | None = None,
    rate_limit_burst: int | None = None,
    configure: bool = True,
) -> GatewayProc:
    """A real `python -m gateway serve` on a fresh data dir, with the bench source and its
    TikTok integration (unless `configure` is False: a replica of a shared store that another
    replica configured)."""
    data_dir = workdir / f"{name}-data"
    collect_port, admin_port = free_port(), free_port()
    env = python_env()
    env.update(
        {
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_COLLECT_PORT": str(collect_port),
            "GATEWAY_ADMIN_PORT": str(admin_port),
            "GATEWAY_DATA_DIR": str(data_dir),
            "GATEWAY_TIKTOK_API_URL": tiktok_url,
            "GATEWAY_ADMIN_TOKEN": workload.ADMIN_TOKEN,
            "GATEWAY_SECRET_KEY": workload.SECRET_KEY,
            "GATEWAY_LOG_FORMAT": "json",
        }
    )
    env.update(settings or {})
    cmd = [*pin.prefix(cpus), sys.executable, "-m", "gateway", "serve", "--workers", str(workers)]
    proc = spawn(name, cmd, env, workdir / f"{name}.log")
    gateway = GatewayProc(
        proc,
        f"http://127.0.0.1:{collect_port}",
        f"http://127.0.0.1:{admin_port}",
        data_dir,
        settings=dict(settings or {}),
    )
    wait_http(f"{gateway.admin_url}/readyz", proc.process)
    wait_http(f"{gateway.collect_url}/healthz", proc.process)
    if not configure:
        return gateway
    token = workload.ADMIN_TOKEN
    http(
        "POST",
        f"{gateway.admin_url}/v1/admin/sources",
        {
            "id": workload.SOURCE_ID,
            "name": "Bench shop",
            "allowed_origins": [workload.ORIGIN],
            "cookie_domain": "shop.example",
            "default_phone_region": "US",
        },
        token,
    )
    config: dict[str, Any] = {"pixel_code": PIXEL, "access_token": "bench_access_token_0123"}
    if rate_limit_rps is not None:
        config["rate_limit_rps"] = rate_limit_rps
    if rate_limit_burst is not None:
        config["rate_limit_burst"] = rate_limit_burst
    created = http(
        "POST",
        f"{gateway.admin_url}/v1/admin/integrations",
        {
            "source_id": workload.SOURCE_ID,
            "vendor": "tiktok",
            "name": "TikTok (bench double)",
            "enabled": True,
            "consent_categories": ["advertising"],
            "config": config,
        },
        token,
    )
    gateway.integration_id = created["id"]
    # Every worker process must see the new source before the load starts (they poll the
    # store's config version twice a second).
    time.sleep(1.2 if workers > 1 else 0.1)
    return gateway
