"""Delivery never follows a redirect: the access token goes to GATEWAY_TIKTOK_API_URL only.

The attack: the configured endpoint answers a redirect to a server someone else runs, hoping the
gateway repeats the request there, `Access-Token` header included.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.destinations.base import Answer as GatewayAnswer
from gateway.destinations.base import Verdict
from gateway.destinations.tiktok.classify import classify
from tests.delivery_rig import INTEGRATION, TOKEN, open_rig
from tests.tiktok_double import Answer, TikTokDouble


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_is_not_followed_and_pauses_with_the_location(
    tmp_path: Path, tiktok: TikTokDouble, status: int
) -> None:
    async with TikTokDouble() as elsewhere:
        tiktok.play(Answer(status=status, code=0, location=elsewhere.url))
        async with open_rig(tmp_path, tiktok, max_events=1000, batch_max_wait_ms=10) as rig:
            await rig.add_integration()
            worker = await rig.start_worker()
            await rig.enqueue(3, worker)
            await tiktok.wait_for(lambda: len(tiktok.requests) == 1)
            await worker.drain(timeout_s=10)  # paused integrations do not count

            # The other server was never asked anything, so it never saw the token.
            leaked = [r for r in elsewhere.requests + elsewhere.strays if TOKEN in str(r.headers)]
            assert leaked == []
            assert (elsewhere.requests, elsewhere.strays) == ([], [])

            integration = await rig.store.get_integration(INTEGRATION)
            assert integration is not None
            assert integration.paused_reason == (
                f"HTTP {status}: redirect to {elsewhere.url} not followed"
                " (check GATEWAY_TIKTOK_API_URL)"
            )
            stats = await rig.queue.stats(INTEGRATION)
            assert (stats.queued, stats.dead_lettered) == (3, 0)  # kept for after the fix


def test_a_redirect_pauses() -> None:
    answer = GatewayAnswer(302, None, "redirect to x not followed", None, None, None)
    assert classify(answer) is Verdict.PAUSE
