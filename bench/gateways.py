"""The gateway under test: real `python -m gateway serve` processes on a fresh data dir,
configured through the Management API, and what the harness reads of them without asking them:
the hit log's backlog and the event ledger's progress, from their files.

A gateway is one process (`--role all`, the default: collection, delivery and the Management
API), or one data dir shared by three (`SplitGateway`): `--role collect`, the server under test,
`--role deliver`, and `--role admin`, through which the harness configures it.
"""

from __future__ import annotations

import contextlib
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
# The hit log's backlog: the records past each consumer's cursor, and the retries waiting (a
# record whose events failed is copied into the retry set, and the cursor moves on). Both are
# counters or an index the log keeps, so this reads no record.
_BACKLOG_SQL = """
SELECT coalesce((SELECT sum(coalesce(s.appended, 0) - c.passed)
                 FROM log_cursors c LEFT JOIN log_sources s USING (source_id)), 0)
     + (SELECT count(*) FROM log_retries)
"""
# Every row the ledger writes takes the next `seq`, whichever process wrote it.
_LEDGER_SEQ_SQL = "SELECT coalesce(max(seq), 0) FROM changes"
# What a process logs once when its ledger's buffer overflowed (gateway/ledger/sqlite.py).
_LEDGER_DROPPED_LOG = "ledger buffer full"


@dataclass
class GatewayProc:
    """One gateway process (a `--workers N` tree counts as one). `collect_url` and `admin_url`
    are empty when its role serves no such port."""

    proc: Proc
    collect_url: str
    admin_url: str
    data_dir: Path
    role: str = "all"
    integration_id: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    # Hits waiting when the log is not the data dir's SQLite file (Redis: the prefix's streams).
    backlog_fn: Callable[[], int] | None = None
    _files: dict[str, sqlite3.Connection] = field(default_factory=dict)

    def backlog(self) -> int:
        """Hits not yet delivered, from the hit log's own counters (no request to the
        gateway); -1 while the file cannot be read."""
        if self.backlog_fn is not None:
            return self.backlog_fn()
        value = self._read("hitlog.db", _BACKLOG_SQL)
        return -1 if value is None else value

    def ledger_seq(self) -> int | None:
        """The last row the event ledger wrote (claims, batches, failures: every process of the
        data dir together), from its file; None while it cannot be read."""
        return self._read("ledger.db", _LEDGER_SEQ_SQL)

    def _read(self, file_name: str, sql: str) -> int | None:
        try:
            conn = self._files.get(file_name)
            if conn is None:
                uri = f"file:{self.data_dir / file_name}?mode=ro"
                conn = self._files[file_name] = sqlite3.connect(uri, uri=True, timeout=5)
            row = conn.execute(sql).fetchone()
        except sqlite3.Error:  # not created yet, or a schema being made
            return None
        return None if row is None else int(row[0])

    def ledger_counts(self) -> dict[str, float]:
        """The event debugger's records written and dropped by this process (`/metrics`; {}
        when it serves no Management API or does not answer)."""
        if not self.admin_url:
            return {}
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

    def ledger_dropped_logged(self) -> bool:
        """Whether the process said its ledger dropped records (for roles without /metrics)."""
        with contextlib.suppress(OSError):
            return _LEDGER_DROPPED_LOG in self.proc.log_path.read_text(errors="replace")
        return False

    def stop(self) -> None:
        for conn in self._files.values():
            conn.close()
        self._files.clear()
        self.proc.stop()


@dataclass(frozen=True)
class GatewaySetup:
    """What every process of one gateway shares: data dir, ports, settings."""

    data_dir: Path
    collect_url: str
    admin_url: str
    env: dict[str, str]
    settings: dict[str, str]


def gateway_setup(
    workdir: Path, name: str, tiktok_url: str, settings: dict[str, str] | None = None
) -> GatewaySetup:
    """A fresh data dir and ports; the bench's secrets, JSON logs, TikTok at the double."""
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
    return GatewaySetup(
        data_dir,
        f"http://127.0.0.1:{collect_port}",
        f"http://127.0.0.1:{admin_port}",
        env,
        dict(settings or {}),
    )


def launch(
    setup: GatewaySetup,
    workdir: Path,
    name: str,
    cpus: str | None,
    pin: Pinning,
    *,
    role: str = "all",
    workers: int = 1,
) -> GatewayProc:
    """Start one `gateway serve` process of the setup and wait until it serves its role."""
    gateway = launch_nowait(setup, workdir, name, cpus, pin, role=role, workers=workers)
    try:
        wait_ready(gateway)
    except BaseException:
        gateway.stop()
        raise
    return gateway


def launch_nowait(
    setup: GatewaySetup,
    workdir: Path,
    name: str,
    cpus: str | None,
    pin: Pinning,
    *,
    role: str = "all",
    workers: int = 1,
) -> GatewayProc:
    cmd = [*pin.prefix(cpus), sys.executable, "-m", "gateway", "serve", "--workers", str(workers)]
    if role != "all":
        cmd += ["--role", role]
    proc = spawn(name, cmd, setup.env, workdir / f"{name}.log")
    return GatewayProc(
        proc,
        setup.collect_url if role in ("all", "collect") else "",
        setup.admin_url if role in ("all", "admin") else "",
        setup.data_dir,
        role=role,
        settings=setup.settings,
    )


def wait_ready(gateway: GatewayProc) -> None:
    """Until the process answers on the ports of its role (the deliver role serves none: it
    says in its log that it is ready)."""
    process = gateway.proc.process
    if gateway.admin_url:
        wait_http(f"{gateway.admin_url}/readyz", process)
    if gateway.collect_url:
        wait_http(f"{gateway.collect_url}/healthz", process)
    if not (gateway.admin_url or gateway.collect_url):
        wait_log(gateway.proc, f"ready (role {gateway.role})")


def wait_log(proc: Proc, text: str, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"{proc.process.args!r} exited with {proc.process.returncode}")
        with contextlib.suppress(OSError):
            if text in proc.log_path.read_text(errors="replace"):
                return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not log {text!r} within {within_s} s")


def configure(
    gateway: GatewayProc,
    *,
    rate_limit_rps: float | None = None,
    rate_limit_burst: int | None = None,
) -> None:
    """The bench source and its TikTok integration, through the Management API."""
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


# Other processes see a new source and integration once they polled the store's config version
# (twice a second).
CONFIG_SEEN_S = 1.2


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
    configure_it: bool = True,
) -> GatewayProc:
    """One `gateway serve` process on a fresh data dir, with the bench source and its TikTok
    integration (unless `configure_it` is False: a replica of a shared store that another
    replica configured)."""
    setup = gateway_setup(workdir, name, tiktok_url, settings)
    gateway = launch(setup, workdir, name, cpus, pin, workers=workers)
    if configure_it:
        try:
            configure(gateway, rate_limit_rps=rate_limit_rps, rate_limit_burst=rate_limit_burst)
        except BaseException:
            gateway.stop()
            raise
        # Every worker process must see the new source before the load starts.
        time.sleep(CONFIG_SEEN_S if workers > 1 else 0.1)
    return gateway


@dataclass
class SplitGateway:
    """One data dir, three processes: collection (the server under test), delivery, and the
    Management API the harness configured it through."""

    collect: GatewayProc
    deliver: GatewayProc
    admin: GatewayProc

    @property
    def processes(self) -> list[GatewayProc]:
        # In the order they stop: no new hits first, then delivery drains, then the admin.
        return [self.collect, self.deliver, self.admin]


def start_split(
    workdir: Path,
    name: str,
    tiktok_url: str,
    pin: Pinning,
    *,
    collect_cpus: str | None,
    other_cpus: str | None,
    settings: dict[str, str] | None = None,
) -> SplitGateway:
    """`--role admin` first (it configures the data dir), then `--role collect` on
    `collect_cpus` and `--role deliver` on `other_cpus` (the admin's too), same settings."""
    setup = gateway_setup(workdir, name, tiktok_url, settings)
    started: list[GatewayProc] = []
    try:
        admin = launch(setup, workdir, f"{name}-admin", other_cpus, pin, role="admin")
        started.append(admin)
        configure(admin)
        # The admin made the data dir's files; the other two start together.
        for role, cpus in (("collect", collect_cpus), ("deliver", other_cpus)):
            started.append(launch_nowait(setup, workdir, f"{name}-{role}", cpus, pin, role=role))
        for gateway in started[1:]:
            wait_ready(gateway)
    except BaseException:
        for gateway in started:
            gateway.stop()
        raise
    _, collect, deliver = started
    collect.integration_id = deliver.integration_id = admin.integration_id
    # Both read the configuration the admin wrote from the store (they poll its version).
    time.sleep(CONFIG_SEEN_S)
    return SplitGateway(collect, deliver, admin)
