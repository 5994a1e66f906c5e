"""The benchmark harness runs end to end and writes its JSON: a smoke run of every phase.

No timing is asserted (the benchmark is the judge of speed, on a quiet machine); this checks
that `make bench` would work: processes start, load is driven, the TikTok double sees events,
and each phase reports the keys bench/README.md and the README's table rely on.

The redis phase needs Redis and PostgreSQL (this machine's, or `GATEWAY_TEST_REDIS_URL` and
`GATEWAY_TEST_POSTGRES_URL`): without them it reports why it skipped, unless
`GATEWAY_TEST_REQUIRE_SERVICES=1` (CI), which makes the harness fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.bench]
REQUIRE_SERVICES = os.environ.get("GATEWAY_TEST_REQUIRE_SERVICES") == "1"

ROOT = Path(__file__).resolve().parent.parent


def smoke_run(out: Path, *args: str, timeout_s: float) -> dict[str, Any]:
    """`bench.run --smoke` with these arguments; its JSON results."""
    # The gateway's settings stay out; the tests' service URLs and REQUIRE_SERVICES go through.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GATEWAY_") or k.startswith("GATEWAY_TEST_")
    }
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", *args, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results: dict[str, Any] = json.loads(out.read_text())
    return results


@pytest.mark.timeout(200)
def test_smoke_run_writes_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    results = smoke_run(out, timeout_s=190)

    assert {"nproc", "cpu_model", "python", "other_load_pct"} <= results["machine"].keys()
    assert results["config"]["loadgen"] in ("wrk", "python")
    assert "| hits/s |" in results["table_md"]
    assert out.with_suffix(".md").read_text().strip() == results["table_md"].strip()

    compare = results["compare"]
    for side in ("ceiling", "gateway"):
        for key in ("hits_per_s", "p50_ms", "p99_ms", "p99_9_ms", "cpu_us_per_hit"):
            assert {"median", "min", "max", "spread_pct", "rounds"} <= compare[side][key].keys()
        assert compare[side]["peak_rss_mb"] > 0
    for key in (
        "events_delivered_per_s",
        "events_per_request",
        "hit_to_tiktok_p50_ms",
        "hit_to_tiktok_p99_ms",
    ):
        assert key in compare["gateway"]
    assert compare["gateway"]["hits_per_s"]["median"] > 0
    assert compare["gateway"]["hit_to_tiktok_p50_ms"]["median"] is not None
    assert compare["gateway"]["errors"] == 0
    assert set(compare["ratios"]) == {"throughput", "cpu_per_hit", "p99"}
    assert compare["targets"] == {"throughput": 0.55, "cpu_per_hit": 1.8}

    roles = results["roles"]
    assert roles["targets"] == {"throughput": 0.65, "cpu_per_hit": 1.5}
    assert roles["gateway"]["hits_per_s"]["median"] > 0
    for key in ("deliver_cpu_us_per_hit", "admin_cpu_us_per_hit", "all_processes_cpu_us_per_hit"):
        assert roles["gateway"][key]["median"] is not None
    assert roles["gateway"]["errors"] == 0
    assert roles["gateway"]["drained"] is True
    # Not a timing: every acknowledged hit reaches TikTok once through the deliver process.
    assert roles["integrity"]["acknowledged"] > 0
    assert roles["integrity"]["lost"] == 0
    assert roles["integrity"]["duplicated"] == 0
    assert "Collection alone" in results["table_md"]

    sustained = results["sustained"]
    assert {"bounded", "max_depth", "growth_hits_per_s"} <= sustained["backlog"].keys()
    assert {"p99_ratio_same_rate", "hit_to_tiktok_p50_within_target"} <= sustained.keys()
    assert {"p99_target_ms", "p99_within_target"} <= sustained.keys()
    assert sustained["roles"]["collect"]["hits_per_s"] > 0
    assert sustained["roles"]["collect"]["drained"] is True
    assert {"mean_batch_size", "rate_limit_rps", "backlog"} <= results["ratelimit"].keys()

    workers = results["workers"]
    assert {"workers_1", "workers_2", "scaling", "integrity"} <= workers.keys()
    # Not a timing: an acknowledged hit must reach TikTok exactly once, whatever the speed.
    assert workers["integrity"]["acknowledged"] > 0
    assert workers["integrity"]["lost"] == 0
    assert workers["integrity"]["duplicated"] == 0

    redis = results["redis"]
    if "skipped" in redis:
        assert not REQUIRE_SERVICES, redis["skipped"]
        assert "not reachable" in redis["skipped"]
        assert "Redis mode: skipped" in results["table_md"]
    else:
        for mode in ("sqlite", "redis_1", "redis_2"):
            for key in ("hits_per_s", "p50_ms", "p99_ms", "cpu_us_per_hit", "all_cpu_us_per_hit"):
                assert {"median", "spread_pct", "rounds"} <= redis[mode][key].keys()
            assert redis[mode]["hits_per_s"]["median"] > 0
            assert redis[mode]["events_delivered"] > 0
            assert redis[mode]["errors"] == 0
        for mode in ("redis_1", "redis_2"):
            assert redis[mode]["redis_cpu_us_per_hit"]["median"] is not None
            assert redis["streams"][mode]["bytes_per_record"] > 0
        # Both replicas took their share of the load.
        assert [part["requests"] > 0 for part in redis["rounds"]["redis_2"][0]["replicas"]] == [
            True,
            True,
        ]
        assert {"redis_1_vs_sqlite_throughput", "redis_2_vs_redis_1_throughput"} <= set(
            redis["ratios"]
        )
        assert redis["integrity"]["acknowledged"] > 0
        assert redis["integrity"]["lost"] == 0
        assert redis["integrity"]["duplicated"] == 0
        assert redis["cleanup"]["redis_keys_left"] == 0
        assert redis["cleanup"]["postgres_schemas_left"] == 0
        assert (
            "| SQLite (embedded) | Redis + PostgreSQL, 1 replica | 2 replicas |"
            in (results["table_md"])
        )

    outage = results["outage"]
    assert outage["hits_queued"] >= outage["target_hits"]
    assert {"peak_rss_mb", "rss_under_200_mb", "recovery"} <= outage.keys()
    assert outage["disk_bytes_per_queued_hit"] > 0

    micro = results["micro"]
    assert [p["producers"] for p in micro["log"]["append"]] == [1, 16, 64, 256]
    assert micro["log"]["read_commit"]["records_per_s"] > 0
    assert micro["log"]["disk"]["bytes_per_record"] > 0
    assert micro["collect"]["decode_plan_render_hits_per_s"] > 0
    assert micro["deliver"]["read_plan_records_per_s"] > 0
    assert micro["transform"]["transform_events_per_s"] > 0
    assert "sha256_hex" in micro["units_us"]

    profile = results["profile"]
    if "skipped" not in profile:
        for role in ("all", "collect"):
            assert profile[role]["self_pct_of_loop"], role
        # A second of smoke load may leave the deliver process nothing to do while sampled.
        assert "samples_by_thread" in profile["deliver"]


@pytest.mark.timeout(120)
def test_random_message_ids_are_sent_and_still_timed(tmp_path: Path) -> None:
    """`--random-ids`: ids that start at random, as the tag's UUIDs (the hit log's event-id index
    then sees random keys); the TikTok double still reads each event's send time from them."""
    results = smoke_run(
        tmp_path / "latest.json", "--phases", "compare", "--random-ids", timeout_s=110
    )
    assert results["config"]["random_ids"] is True
    assert "message ids random" in results["table_md"]
    gateway = results["compare"]["gateway"]
    assert gateway["errors"] == 0
    assert gateway["events_per_hit"]["median"] > 0.8  # the workload sends 0.826 events per hit
    assert gateway["hit_to_tiktok_p50_ms"]["median"] is not None
