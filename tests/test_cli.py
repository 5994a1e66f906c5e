"""The command line and the process: start-up errors, `gateway serve`, SIGKILL, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.processes import (
    configure,
    gateway_env,
    run_cli,
    running_gateway,
)
from tests.tiktok_double import Answer, TikTokDouble

pytestmark = pytest.mark.slow


# -- start-up ----


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("GATEWAY_COLLECT_PORT", "eighty", "GATEWAY_COLLECT_PORT"),
        ("GATEWAY_BATCH_MAX_EVENTS", "5000", "GATEWAY_BATCH_MAX_EVENTS"),
        ("GATEWAY_TRUSTED_PROXIES", "10.0.0.0/33", "GATEWAY_TRUSTED_PROXIES"),
        ("GATEWAY_TIKTOK_API_URL", "ftp://x", "GATEWAY_TIKTOK_API_URL"),
        ("GATEWAY_PUBLIC_URL", "collect.shop.example", "GATEWAY_PUBLIC_URL"),
        ("GATEWAY_PUBLIC_URL", "https://collect.shop.example/?x=1", "GATEWAY_PUBLIC_URL"),
        ("GATEWAY_ADMIN_TOKEN", "short", "GATEWAY_ADMIN_TOKEN"),
        ("GATEWAY_LOG_FORMAT", "xml", "GATEWAY_LOG_FORMAT"),
        ("GATEWAY_COLECT_PORT", "8080", "GATEWAY_COLECT_PORT"),
    ],
)
def test_invalid_setting_stops_start_up_naming_it(
    tmp_path: Path, variable: str, value: str, named: str
) -> None:
    env = gateway_env(tmp_path, "http://127.0.0.1:9/")
    env[variable] = value
    result = run_cli("serve", env=env)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    if variable == "GATEWAY_ADMIN_TOKEN":
        assert value not in result.stderr.replace(variable, "")


def test_toml_file_with_environment_winning(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('batch_max_events = 2000\nGATEWAY_LOG_FORMAT = "json"\n')
    env = gateway_env(tmp_path, "http://127.0.0.1:9/")
    result = run_cli("serve", "--config", str(config), env=env)
    assert result.returncode == 2
    assert "GATEWAY_BATCH_MAX_EVENTS" in result.stderr
    missing = run_cli("serve", "--config", str(tmp_path / "nope.toml"), env=env)
    assert missing.returncode == 2 and "--config" in missing.stderr


async def test_serve_prints_endpoints_and_generated_token(tmp_path: Path) -> None:
    async with TikTokDouble() as tiktok:
        env = gateway_env(tmp_path / "data", tiktok.url)
        del env["GATEWAY_ADMIN_TOKEN"]
        log = tmp_path / "out.log"
        async with running_gateway(env, log) as gw:
            token = (tmp_path / "data" / "admin_token").read_text().strip()
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    f"{gw.admin_url}/v1/admin/sources", headers={"Authorization": f"Bearer {token}"}
                ) as resp,
            ):
                assert resp.status == 200
            gw.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(gw.process.wait(), 20) == 0
        printed = log.read_text()
        assert f"{gw.collect_url}/v1/t" in printed
        assert f"{gw.admin_url}/v1/admin/" in printed
        assert token in printed
        # The second start does not print the token again.
        async with running_gateway(env, tmp_path / "second.log"):
            pass
        assert token not in (tmp_path / "second.log").read_text()


# -- crash safety ----


async def _fire(
    session: aiohttp.ClientSession,
    url: str,
    acked: set[str],
    stop: asyncio.Event,
    sent: set[str] | None = None,
) -> None:
    while not stop.is_set():
        message_id = f"m-{uuid.uuid4().hex}"
        if sent is not None:
            sent.add(message_id)
        body: dict[str, Any] = {
            "source_id": "src_test",
            "message_id": message_id,
            "context": {"consent": {"advertising": True}},
        }
        try:
            async with session.post(f"{url}/v1/p", json=body) as resp:
                if resp.status == 200:
                    acked.add(message_id)
        except (TimeoutError, aiohttp.ClientError):
            await asyncio.sleep(0.01)


async def test_sigkill_under_load_loses_no_acknowledged_hit(tmp_path: Path) -> None:
    seed = int(os.environ.get("GATEWAY_TEST_SEED", "0")) or random.randrange(1, 10**6)
    moments = random.Random(seed)
    async with TikTokDouble() as tiktok:
        # TikTok is slow, so that events are in flight or leased when the process dies.
        tiktok.play(*[Answer(delay_s=0.2)] * 20)
        env = gateway_env(tmp_path / "data", tiktok.url)
        acked: set[str] = set()
        sent: set[str] = set()
        killed_at: list[float] = []
        for round_ in range(3):
            async with running_gateway(env, tmp_path / f"run{round_}.log") as gw:
                if round_ == 0:
                    await configure(gw.admin_url)
                stop = asyncio.Event()
                async with aiohttp.ClientSession() as session:
                    firing = [
                        asyncio.create_task(_fire(session, gw.collect_url, acked, stop, sent))
                        for _ in range(16)
                    ]
                    killed_at.append(moments.uniform(0.3, 1.5))
                    await asyncio.sleep(killed_at[-1])
                    gw.process.kill()  # SIGKILL at a random moment of hits and deliveries
                    await gw.process.wait()
                    stop.set()
                    await asyncio.gather(*firing)
        async with running_gateway(env, tmp_path / "final.log"):
            await tiktok.wait_for(lambda: acked <= set(tiktok.accepted_ids()), timeout=60)
        delivered = tiktok.accepted_ids()
        print(
            f"sigkill: seed {seed} (GATEWAY_TEST_SEED to repeat), killed after "
            f"{', '.join(f'{t:.2f}' for t in killed_at)} s: {len(acked)} acknowledged hits, "
            f"0 missing; {len(delivered)} events accepted by TikTok, "
            f"{len(delivered) - len(set(delivered))} duplicates (same event_id), "
            f"{len(set(delivered) - acked)} delivered whose answer the kill cut off"
        )
        assert len(acked) > 100
        assert acked <= set(delivered)
        # A duplicate or an unacknowledged delivery is always a hit that was sent, under its id.
        assert set(delivered) <= sent
        assert tiktok.problems == []


async def test_sigterm_drains_in_flight_and_keeps_the_rest(tmp_path: Path) -> None:
    async with TikTokDouble() as tiktok:
        env = gateway_env(tmp_path / "data", tiktok.url, GATEWAY_BATCH_MAX_WAIT_MS="60000")
        ids = [f"m-{i}" for i in range(50)]
        async with running_gateway(env, tmp_path / "a.log") as gw:
            await configure(gw.admin_url)
            async with aiohttp.ClientSession() as session:
                for message_id in ids:
                    async with session.post(
                        f"{gw.collect_url}/v1/p",
                        json={"source_id": "src_test", "message_id": message_id},
                    ) as resp:
                        assert resp.status == 200
            gw.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(gw.process.wait(), 30) == 0
        # The batch was still waiting to fill: nothing sent, nothing lost.
        assert tiktok.accepted == []
        env["GATEWAY_BATCH_MAX_WAIT_MS"] = "50"
        async with running_gateway(env, tmp_path / "b.log"):
            await tiktok.wait_for(lambda: len(tiktok.accepted) >= len(ids), timeout=30)
        assert sorted(tiktok.accepted_ids()) == sorted(ids)


async def _post_all(collect_url: str, ids: list[str]) -> None:
    hits = [{"type": "page", "source_id": "src_test", "message_id": m} for m in ids]
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{collect_url}/v1/batch", json={"batch": hits}) as resp,
    ):
        assert resp.status == 200, await resp.text()


async def _sigterm_while_first_request_is_at_tiktok(
    env: dict[str, str], log: Path, ids: list[str], tiktok: TikTokDouble
) -> float:
    """Start, collect `ids`, send SIGTERM once TikTok has the first batch: seconds to exit 0."""
    async with running_gateway(env, log) as gw:
        await configure(gw.admin_url)
        await _post_all(gw.collect_url, ids)
        await tiktok.wait_for(lambda: len(tiktok.requests) == 1)
        started = time.monotonic()
        gw.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(gw.process.wait(), 30) == 0
        return time.monotonic() - started


async def test_sigterm_lets_the_tiktok_request_in_flight_finish(tmp_path: Path) -> None:
    async with TikTokDouble() as tiktok:
        tiktok.play(Answer(delay_s=1.0))  # the first batch is still at TikTok at SIGTERM
        env = gateway_env(tmp_path / "data", tiktok.url, GATEWAY_BATCH_MAX_EVENTS="10")
        ids = [f"m-{i:02d}" for i in range(50)]
        took = await _sigterm_while_first_request_is_at_tiktok(env, tmp_path / "a.log", ids, tiktok)
        # The request in flight finished and was acknowledged; nothing else left.
        in_flight = tiktok.requests[0].event_ids
        assert sorted(tiktok.accepted_ids()) == sorted(in_flight) and len(in_flight) == 10
        assert len(tiktok.requests) == 1
        async with running_gateway(env, tmp_path / "b.log"):
            await tiktok.wait_for(lambda: len(tiktok.accepted) >= len(ids), timeout=30)
        delivered = tiktok.accepted_ids()
        assert sorted(delivered) == sorted(ids)  # each once: the finished batch was not resent
        print(
            f"sigterm: the request in flight ({len(in_flight)} events, TikTok answering after "
            f"1 s) finished; exit 0 after {took:.2f} s; {len(ids) - len(in_flight)} kept and "
            f"delivered after the restart; {len(delivered) - len(set(delivered))} duplicates"
        )


async def test_sigterm_gives_up_on_a_hung_tiktok_after_the_timeout(tmp_path: Path) -> None:
    async with TikTokDouble() as tiktok:
        # TikTok takes the first batch, then hangs before answering.
        tiktok.play(Answer(delay_s=30.0, accept_first=True))
        env = gateway_env(
            tmp_path / "data",
            tiktok.url,
            GATEWAY_BATCH_MAX_EVENTS="10",
            GATEWAY_SHUTDOWN_TIMEOUT_S="0.5",
            GATEWAY_TIKTOK_TIMEOUT_S="30",
        )
        ids = [f"m-{i:02d}" for i in range(30)]
        took = await _sigterm_while_first_request_is_at_tiktok(env, tmp_path / "a.log", ids, tiktok)
        assert took < 10.0  # it did not wait for TikTok's answer
        cut_off = tiktok.requests[0]
        # The cut-off batch went back unblamed: the next start sends it again, with the rest.
        async with running_gateway(env, tmp_path / "b.log"):
            resent = len(ids) + len(cut_off.event_ids)
            await tiktok.wait_for(lambda: len(tiktok.accepted) >= resent, timeout=30)
        delivered = tiktok.accepted_ids()
        assert set(delivered) == set(ids)
        twice = sorted({e for e in delivered if delivered.count(e) > 1})
        # Only the batch that was cut off arrives twice, and under the same event_ids.
        assert twice == sorted(cut_off.event_ids)
        assert len(delivered) == len(ids) + len(twice)
        print(
            f"sigterm: TikTok hung; exit 0 after {took:.2f} s (GATEWAY_SHUTDOWN_TIMEOUT_S=0.5), "
            f"the cut-off batch given back unblamed; after the restart all {len(ids)} delivered; "
            f"TikTok had taken the cut-off batch too: {len(twice)} duplicates, each under the "
            "same event_id (TikTok de-duplicates them)"
        )
