"""`--role`: an admin, a collect and a deliver process split one gateway between them.

Each serves only its own part: admin no collection port and no worker, collect no admin port and
no worker, deliver no port at all; together (sharing the data directory) they work as one.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.processes import configure, gateway_env
from tests.tiktok_double import TikTokDouble

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def role(
    env: dict[str, str], name: str, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--role",
            name,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        for _ in range(200):
            printed = await asyncio.to_thread(log.read_text)
            if f"ready (role {name})" in printed:
                break
            assert process.returncode is None, printed[-2000:]
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"--role {name} did not start: {printed[-2000:]}")
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 20)


async def answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return resp.status < 500
    except aiohttp.ClientConnectionError:
        return False


async def test_roles_split_the_gateway(tmp_path: Path) -> None:
    async with TikTokDouble() as tiktok:
        env = gateway_env(tmp_path / "data", tiktok.url, GATEWAY_BATCH_MAX_WAIT_MS="20")
        collect = f"http://127.0.0.1:{env['GATEWAY_COLLECT_PORT']}"
        admin = f"http://127.0.0.1:{env['GATEWAY_ADMIN_PORT']}"
        async with role(env, "admin", tmp_path / "admin.log"):
            assert await answers(f"{admin}/healthz")
            assert not await answers(f"{collect}/healthz")
            await configure(admin)
            async with role(env, "collect", tmp_path / "collect.log"):
                assert await answers(f"{collect}/healthz")
                async with aiohttp.ClientSession() as session:
                    for n in range(5):
                        body = {"source_id": "src_test", "message_id": f"m-{n}"}
                        async with session.post(f"{collect}/v1/p", json=body) as resp:
                            assert resp.status == 200
                # Neither the admin nor the collect process delivers: the hits wait, stored.
                # (An absence can only be watched for a while: 25 times the batch wait.)
                await asyncio.sleep(0.5)
                assert tiktok.requests == []
        # Only a deliver process is left: it serves no port, and it delivers everything.
        async with role(env, "deliver", tmp_path / "deliver.log"):
            await tiktok.wait_for(lambda: len(tiktok.accepted) == 5, timeout=20)
            assert not await answers(f"{collect}/healthz")
            assert not await answers(f"{admin}/healthz")
        assert sorted(tiktok.accepted_ids()) == [f"m-{n}" for n in range(5)]
