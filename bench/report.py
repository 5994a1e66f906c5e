"""The benchmark's tables: markdown from a run's results, printed at the end of a run and kept
in bench/README.md between its markers."""

from __future__ import annotations

from typing import Any

# --- output ----------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}{suffix}"
    return str(value)


def _med(block: dict[str, Any], key: str, digits: int = 0) -> str:
    item = block.get(key)
    if not isinstance(item, dict):
        return _fmt(item, digits)
    text = _fmt(item.get("median"), digits)
    if item.get("spread_pct") is not None and len(item.get("rounds", [])) > 1:
        text += f" (±{item['spread_pct'] / 2:.0f}%)"
    return text


def _phase(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A phase's results, or None when it did not run or failed."""
    value = results.get(name)
    return value if isinstance(value, dict) and "error" not in value else None


def table(results: dict[str, Any]) -> str:
    """The short table: markdown, printed at the end and kept in bench/README.md."""
    m = results["machine"]
    lines = [
        f"Taken {results['taken_at']} on {m['nproc']} x {m['cpu_model']}, Python {m['python']}, "
        f"load generator {results['config']['loadgen']}, "
        f"{results['config']['connections']} connections"
        + (
            f" — **busy machine**: other jobs used {m.get('other_load_pct')}% of all CPUs"
            " during the run"
            if results.get("busy_machine")
            else f"; other jobs used {m.get('other_load_pct')}% of the CPUs meanwhile"
        )
        + ".",
        "",
    ]
    compare = _phase(results, "compare")
    if compare:
        c, g, r = compare["ceiling"], compare["gateway"], compare["ratios"]
        rounds = len(compare["rounds"]["gateway"])
        lines += [
            f"Side by side: median of {rounds} alternated rounds of "
            f"{results['config']['duration_s']} s (± half the spread); server on CPU 0, "
            "wrk on CPU 1.",
            "",
            "| | ceiling (bare aiohttp) | gateway | gateway / ceiling |",
            "|---|---:|---:|---:|",
            f"| hits/s | {_med(c, 'hits_per_s')} | {_med(g, 'hits_per_s')} | "
            f"{_fmt(r['throughput'], 2)} |",
            f"| CPU µs per hit | {_med(c, 'cpu_us_per_hit')} | {_med(g, 'cpu_us_per_hit')} | "
            f"{_fmt(r['cpu_per_hit'], 2)} |",
            f"| p50 ms | {_med(c, 'p50_ms', 1)} | {_med(g, 'p50_ms', 1)} | |",
            f"| p99 ms | {_med(c, 'p99_ms', 1)} | {_med(g, 'p99_ms', 1)} | {_fmt(r['p99'], 2)} |",
            f"| p99.9 ms | {_med(c, 'p99_9_ms', 1)} | {_med(g, 'p99_9_ms', 1)} | |",
            f"| peak RSS MB | {_fmt(c['peak_rss_mb'], 0)} | {_fmt(g['peak_rss_mb'], 0)} | |",
            f"| events delivered/s | | {_med(g, 'events_delivered_per_s')} | |",
            f"| debugger records dropped (all rounds; the ledger fell behind) | | "
            f"{g.get('ledger_records_dropped', '-')} | |",
            f"| events per TikTok request (while loaded) | | "
            f"{_med(g, 'events_per_request_steady')} | |",
            f"| hit → TikTok p50 / p99 ms (steady) | | {_med(g, 'hit_to_tiktok_p50_ms')} / "
            f"{_med(g, 'hit_to_tiktok_p99_ms')} | |",
            f"| load generator's CPU use % (of its core) | {_med(c, 'loadgen_cpu_pct')} | "
            f"{_med(g, 'loadgen_cpu_pct')} | |",
            f"| other load on the server's CPU % | {_med(c, 'other_load_on_server_cpu_pct')} | "
            f"{_med(g, 'other_load_on_server_cpu_pct')} | |",
            "",
        ]
    lines += redis_table(results)
    rows = []
    s = _phase(results, "sustained")
    if s:
        rows += [
            f"| sustained {_fmt(s['rate_hits_per_s'])} hits/s (80% of max; "
            f"{_fmt(s['gateway']['hits_per_s'])} served) | backlog bounded: "
            f"{_fmt(s['backlog']['bounded'])} (max {_fmt(s['backlog']['max_depth'])} events); "
            f"hit → TikTok p50 {_fmt(s['gateway']['hit_to_tiktok_p50_ms'])} ms (target < "
            f"{s['batch_max_wait_ms'] + 100}); p99 gateway/ceiling at this rate "
            f"{_fmt(s['p99_ratio_same_rate'], 2)} ({_fmt(s['gateway']['p99_ms'], 1)} / "
            f"{_fmt(s['ceiling']['p99_ms'], 1)} ms) |",
        ]
    rl = _phase(results, "ratelimit")
    if rl:
        rows += [
            f"| TikTok limit {_fmt(rl['rate_limit_rps'], 2)} req/s, "
            f"{_fmt(rl['rate_hits_per_s'])} hits/s asked ({_fmt(rl['gateway']['hits_per_s'])} "
            f"served) | mean batch {_fmt(rl['mean_batch_size'], 0)} events while the load ran "
            f"({_fmt(rl['mean_batch_size_with_tail'], 0)} with the remainder; target ≥ 450; "
            f"{_fmt(rl['arrivals_per_token'], 0)} events arrived per token); backlog bounded: "
            f"{_fmt(rl['backlog']['bounded'])} |",
        ]
    w = _phase(results, "workers")
    if w:
        i = w["integrity"]
        rows += [
            f"| --workers 2 vs 1 (nothing pinned) | {_fmt(w['scaling'], 2)}x "
            f"({_med(w['workers_2'], 'hits_per_s')} vs {_med(w['workers_1'], 'hits_per_s')} "
            f"hits/s); {i['acknowledged']} acknowledged hits: {i['lost']} lost, "
            f"{i['duplicated']} duplicated |",
        ]
    rd = _phase(results, "redis")
    if rd and "integrity" in rd:
        i, left = rd["integrity"], rd["cleanup"]
        removed = not left["redis_keys_left"] and not left["postgres_schemas_left"]
        rows += [
            f"| Redis + PostgreSQL, {i['replicas']} replicas | {i['acknowledged']} acknowledged "
            f"hits: {i['lost']} lost, {i['duplicated']} duplicated; the run's Redis keys and "
            f"schemas removed: {_fmt(removed)} |",
        ]
    o = _phase(results, "outage")
    if o:
        rows += [
            f"| outage: {_fmt(o['events_queued'])} events queued | peak RSS "
            f"{_fmt(o['peak_rss_mb'])} MB (target < 200); queue file "
            f"{_fmt(o['queue_db_mb'])} MB; after TikTok is back: first delivery "
            f"{_fmt(o['recovery']['first_delivery_after_s'], 1, ' s')} (waited ≤ "
            f"{_fmt(o['recovery']['waited_at_most_s'])} s), then "
            f"{_fmt(o['recovery']['events_per_s'])} events/s |",
        ]
    mi = _phase(results, "micro")
    if mi:
        q, t = mi["queue"], mi["transform"]
        enq = ", ".join(f"{p['producers']}: {_fmt(p['events_per_s'])}" for p in q["enqueue"])
        rows += [
            f"| queue alone | enqueue events/s by producers ({enq}); claim+ack "
            f"{_fmt(q['claim_ack']['events_per_s'])} events/s |",
            f"| transformation alone | {_fmt(t['transform_events_per_s'])} events/s per core "
            f"(decode + plan + encode: {_fmt(t['pipeline_hits_per_s'])} hits/s) |",
        ]
    if rows:
        lines += ["| check | result |", "|---|---|", *rows, ""]
    return "\n".join(lines)


def redis_table(results: dict[str, Any]) -> list[str]:
    """The redis phase's side-by-side table (empty when it did not run; a line when skipped)."""
    rd = results.get("redis")
    if not isinstance(rd, dict) or "error" in rd:
        return []
    if "skipped" in rd:
        return [f"Redis mode: skipped ({rd['skipped'].rstrip('.')}).", ""]
    modes = ("sqlite", "redis_1", "redis_2")
    sq, r1, r2 = (rd[m] for m in modes)
    r = rd["ratios"]
    info = rd["redis"]
    rounds = len(rd["rounds"]["sqlite"])

    def row(label: str, key: str, digits: int = 0, last: str = "") -> str:
        return (
            f"| {label} | " + " | ".join(_med(rd[m], key, digits) for m in modes) + f" | {last} |"
        )

    return [
        f"Redis mode: median of {rounds} rounds of {results['config']['duration_s']} s, the "
        "three modes rotated (± half the spread). SQLite and 1 replica: server on CPU 0, wrk on "
        f"CPU 1, {results['config']['connections']} connections; 2 replicas: nothing pinned, "
        f"one wrk of {results['config']['connections'] // 2} connections per replica. Redis "
        f"{info.get('version')} (appendonly {info.get('appendonly')}) and PostgreSQL not "
        "pinned.",
        "",
        "| | SQLite (embedded) | Redis + PostgreSQL, 1 replica | 2 replicas | |",
        "|---|---:|---:|---:|---|",
        row(
            "hits/s",
            "hits_per_s",
            0,
            f"1 replica / SQLite {_fmt(r['redis_1_vs_sqlite_throughput'], 2)}; "
            f"2 / 1 replica {_fmt(r['redis_2_vs_redis_1_throughput'], 2)}",
        ),
        row("p50 ms", "p50_ms", 1),
        row("p99 ms", "p99_ms", 1, f"1 replica / SQLite {_fmt(r['redis_1_vs_sqlite_p99'], 2)}"),
        row("p99.9 ms", "p99_9_ms", 1),
        row(
            "gateway CPU µs per hit",
            "cpu_us_per_hit",
            0,
            f"1 replica / SQLite {_fmt(r['redis_1_vs_sqlite_cpu_per_hit'], 2)}",
        ),
        row("+ Redis CPU µs per hit", "redis_cpu_us_per_hit"),
        row("+ PostgreSQL CPU µs per hit", "postgres_cpu_us_per_hit"),
        row("= all server-side CPU µs per hit", "all_cpu_us_per_hit"),
        "| peak RSS MB (all replicas) | "
        + " | ".join(_fmt(rd[m]["peak_rss_mb"]) for m in modes)
        + " | |",
        row("events delivered/s", "events_delivered_per_s"),
        row("events per TikTok request (while loaded)", "events_per_request_steady"),
        row(
            "events delivered per hit answered",
            "events_per_hit",
            3,
            f"sent: {_fmt(rd['events_per_hit_sent'], 3)} (+ the hits in flight at the end)",
        ),
        row("hit → TikTok p50 ms (steady)", "hit_to_tiktok_p50_ms"),
        row("hit → TikTok p99 ms (steady)", "hit_to_tiktok_p99_ms"),
        row("load generators' CPU % (of one core)", "loadgen_cpu_pct"),
        row("other load on the machine % (all CPUs)", "other_load_pct"),
        f"| errors | {sq['errors']} | {r1['errors']} | {r2['errors']} | |",
        "",
    ]
