"""The benchmark harness runs end to end and writes its JSON: a smoke run of every phase.

No timing is asserted (the benchmark is the judge of speed, on a quiet machine); this checks
that `make bench` would work: processes start, load is driven, the TikTok double sees events,
and each phase reports the keys bench/README.md and the README's table rely on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.bench]

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_run_writes_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())

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

    sustained = results["sustained"]
    assert {"bounded", "max_depth", "growth_events_per_s"} <= sustained["backlog"].keys()
    assert {"p99_ratio_same_rate", "hit_to_tiktok_p50_within_target"} <= sustained.keys()
    assert {"mean_batch_size", "rate_limit_rps", "backlog"} <= results["ratelimit"].keys()

    workers = results["workers"]
    assert {"workers_1", "workers_2", "scaling", "integrity"} <= workers.keys()
    # Not a timing: an acknowledged hit must reach TikTok exactly once, whatever the speed.
    assert workers["integrity"]["acknowledged"] > 0
    assert workers["integrity"]["lost"] == 0
    assert workers["integrity"]["duplicated"] == 0

    outage = results["outage"]
    assert outage["events_queued"] >= outage["target_events"]
    assert {"peak_rss_mb", "rss_under_200_mb", "recovery"} <= outage.keys()

    micro = results["micro"]
    assert [p["producers"] for p in micro["queue"]["enqueue"]] == [1, 16, 64, 256]
    assert micro["queue"]["claim_ack"]["events_per_s"] > 0
    assert micro["transform"]["transform_events_per_s"] > 0
    assert "sha256_hex" in micro["units_us"]

    profile = results["profile"]
    assert "skipped" in profile or profile["self_pct_of_loop"]
