"""Real gateway processes for tests: free ports, environment, start, readiness, configuration."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import ADMIN_TOKEN
from tests.log_audit import remember_output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class GatewayProcess:
    process: asyncio.subprocess.Process
    collect_url: str
    admin_url: str
    log_path: Path


def gateway_env(data_dir: Path, tiktok_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        {
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_COLLECT_PORT": str(free_port()),
            "GATEWAY_ADMIN_PORT": str(free_port()),
            "GATEWAY_DATA_DIR": str(data_dir),
            "GATEWAY_TIKTOK_API_URL": tiktok_url,
            "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "GATEWAY_BATCH_MAX_WAIT_MS": "100",
            "GATEWAY_LOG_FORMAT": "json",
        }
    )
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def running_gateway(env: dict[str, str], log_path: Path) -> AsyncIterator[GatewayProcess]:
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", env=env, stdout=log, stderr=log
        )
    gw = GatewayProcess(
        process,
        f"http://127.0.0.1:{env['GATEWAY_COLLECT_PORT']}",
        f"http://{env.get('GATEWAY_ADMIN_HOST') or '127.0.0.1'}:{env['GATEWAY_ADMIN_PORT']}",
        log_path,
    )
    try:
        await wait_ready(gw)
        yield gw
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def wait_ready(gw: GatewayProcess, within_s: float = 20.0) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(int(within_s / 0.1)):
            if gw.process.returncode is not None:
                raise AssertionError(f"gateway exited: {gw.log_path.read_text()[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with (
                    session.get(f"{gw.admin_url}/readyz") as r1,
                    session.get(f"{gw.collect_url}/healthz") as r2,
                ):
                    if r1.status == 200 and r2.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise AssertionError("gateway did not become ready")


async def configure(admin_url: str, **config: Any) -> None:
    """Source `src_test` (consent granted by default) and one TikTok integration; `config`
    adds to or overrides the integration's config (e.g. rate limits)."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(
            f"{admin_url}/v1/admin/sources",
            json={"id": "src_test", "name": "Shop", "consent_default": "grant"},
        ) as resp:
            assert resp.status == 201, await resp.text()
        async with session.post(
            f"{admin_url}/v1/admin/integrations",
            json={
                "source_id": "src_test",
                "vendor": "tiktok",
                "name": "TikTok Events API",
                "enabled": True,
                "consent_categories": ["advertising"],
                "config": {
                    "pixel_code": "CTESTPIXEL0000000001",
                    "access_token": "tok_0123456789",
                    **config,
                },
            },
        ) as resp:
            assert resp.status == 201, await resp.text()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    remember_output(result.stdout, result.stderr)  # the log audit reads it
    return result
