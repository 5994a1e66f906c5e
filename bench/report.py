"""The benchmark's tables: markdown from a run's results, printed at the end of a run and kept
in bench/README.md between its markers."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
        + (", message ids random (`--random-ids`)" if results["config"].get("random_ids") else "")
        + (
            f" — **busy machine**: other jobs used {m.get('other_load_pct')}% of all CPUs"
            " during the run"
            if results.get("busy_machine")
            else f"; other jobs used {m.get('other_load_pct')}% of the CPUs meanwhile"
        )
        + ".",
        "",
    ]
    lines += side_table(results, "compare")
    lines += side_table(results, "roles")
    lines += redis_table(results)
    rows = []
    s = _phase(results, "sustained")
    if s:
        rows += [
            f"| sustained {_fmt(s['rate_hits_per_s'])} hits/s (80% of max; "
            f"{_fmt(s['gateway']['hits_per_s'])} served) | backlog bounded: "
            f"{_fmt(s['backlog']['bounded'])} (max {_fmt(s['backlog']['max_depth'])} hits "
            f"waiting); hit → TikTok p50 {_fmt(s['gateway']['hit_to_tiktok_p50_ms'])} ms "
            f"(target < {s['batch_max_wait_ms'] + 100}); p99 "
            f"{_fmt(s['gateway']['p99_ms'], 1)} ms (target ≤ {_fmt(s['p99_target_ms'])} ms: "
            f"{_met(s['p99_within_target'])}); p99 gateway/ceiling at this rate "
            f"{_fmt(s['p99_ratio_same_rate'], 2)} (ceiling {_fmt(s['ceiling']['p99_ms'], 1)} "
            "ms) |",
        ]
        sr = s.get("roles")
        if sr:
            rows += [
                f"| sustained, collect role alone: {_fmt(sr['rate_hits_per_s'])} hits/s (80% of "
                f"the roles phase's max; {_fmt(sr['collect']['hits_per_s'])} served) | p99 "
                f"{_fmt(sr['collect']['p99_ms'], 1)} ms (target ≤ {_fmt(s['p99_target_ms'])} ms: "
                f"{_met(sr['p99_within_target'])}); p50 {_fmt(sr['collect']['p50_ms'], 1)} ms; "
                f"backlog bounded: {_fmt(sr['backlog']['bounded'])}; hit → TikTok p50 "
                f"{_fmt(sr['collect']['hit_to_tiktok_p50_ms'])} ms |",
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
    ro = _phase(results, "roles")
    if ro:
        i = ro["integrity"]
        rows += [
            f"| roles: collect and deliver processes on one data dir | {i['acknowledged']} "
            f"acknowledged hits: {i['lost']} lost, {i['duplicated']} duplicated |",
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
        streams = rd.get("streams", {})
        if streams:
            rows += [
                "| Redis memory per retained hit (stream entry and event-id hash) | "
                + "; ".join(
                    f"{_fmt(v['bytes_per_record'])} bytes ({mode.replace('_', ' ')}: "
                    f"{_fmt(v['bytes'] / 2**20, 1)} MB for {_fmt(v['records'])} records)"
                    for mode, v in streams.items()
                )
                + " |",
            ]
    o = _phase(results, "outage")
    if o:
        rows += [
            f"| outage: {_fmt(o['hits_queued'])} hits queued | peak RSS "
            f"{_fmt(o['peak_rss_mb'])} MB (target < 200); hit log file "
            f"{_fmt(o['log_file_mb'])} MB: **{_fmt(o['disk_bytes_per_queued_hit'])} bytes per "
            f"queued hit** (ledger file {_fmt(o['ledger_file_mb'])} MB besides); after TikTok "
            "is back: first delivery "
            f"{_fmt(o['recovery']['first_delivery_after_s'], 1, ' s')} (waited ≤ "
            f"{_fmt(o['recovery']['waited_at_most_s'])} s), then "
            f"{_fmt(o['recovery']['events_per_s'])} events/s |",
        ]
    mi = _phase(results, "micro")
    if mi:
        log = mi["log"]
        appends = ", ".join(f"{p['producers']}: {_fmt(p['records_per_s'])}" for p in log["append"])
        redis = log.get("redis")
        on_redis = (
            f"; on Redis {_fmt(redis['records_per_s'])} records/s at {redis['producers']} "
            f"producers, {_fmt(redis['redis_bytes_per_record'])} bytes of Redis memory per record"
            if redis
            else ""
        )
        rows += [
            f"| hit log alone | append records/s by producers ({appends}); read + commit "
            f"{_fmt(log['read_commit']['records_per_s'])} records/s (batches of "
            f"{log['read_commit']['batch']}); {_fmt(log['disk']['bytes_per_record'])} bytes on "
            f"disk per record ({_fmt(log['disk']['record_data_bytes'])} of data){on_redis} |",
            "| collection alone | decode + plan + render the record: "
            f"{_fmt(mi['collect']['decode_plan_render_hits_per_s'])} hits/s per core |",
            "| delivery alone | read the record + plan it (consent, transform, encode): "
            f"{_fmt(mi['deliver']['read_plan_records_per_s'])} records/s per core |",
            f"| transformation alone | {_fmt(mi['transform']['transform_events_per_s'])} events/s "
            "per core |",
        ]
    if rows:
        lines += ["| check | result |", "|---|---|", *rows, ""]
    return "\n".join(lines)


_SIDES = {
    "compare": (
        "Everything in one process (`gateway serve`, as `make run` starts it)",
        "server on CPU 0, wrk and the TikTok double on CPU 1",
    ),
    "roles": (
        "Collection alone (`gateway serve --role collect`; `--role deliver` and `--role admin` "
        "in processes of their own on the same data dir)",
        "collect on CPU 0; deliver, admin, wrk and the TikTok double on CPU 1",
    ),
}


def side_table(results: dict[str, Any], name: str) -> list[str]:
    """A side-by-side phase (compare, roles): the ceiling against the gateway, and issue 13's
    targets for it."""
    side = _phase(results, name)
    if not side:
        return []
    c, g, r, t = side["ceiling"], side["gateway"], side["ratios"], side["targets"]
    met = side["targets_met"]
    title, pinning = _SIDES[name]
    rounds = len(side["rounds"]["gateway"])
    split = "deliver_cpu_us_per_hit" in g
    lines = [
        f"{title}: median of {rounds} alternated rounds of {results['config']['duration_s']} s "
        f"(± half the spread); {pinning}.",
        "",
        f"| | ceiling (bare aiohttp) | {'collect process' if split else 'gateway'} "
        "| gateway / ceiling |",
        "|---|---:|---:|---:|",
        f"| hits/s | {_med(c, 'hits_per_s')} | {_med(g, 'hits_per_s')} | "
        f"{_fmt(r['throughput'], 2)} |",
        f"| CPU µs per hit | {_med(c, 'cpu_us_per_hit')} | {_med(g, 'cpu_us_per_hit')} | "
        f"{_fmt(r['cpu_per_hit'], 2)} |",
    ]
    if split:
        lines += [
            f"| + deliver process CPU µs per hit | | {_med(g, 'deliver_cpu_us_per_hit')} | |",
            f"| + admin process (idle) CPU µs per hit | | {_med(g, 'admin_cpu_us_per_hit')} | |",
            f"| = all processes CPU µs per hit | | {_med(g, 'all_processes_cpu_us_per_hit')} | "
            f"{_fmt(_over_ceiling_cpu(g, c, 'all_processes_cpu_us_per_hit'), 2)} |",
        ]
    rss = f"{_fmt(g['peak_rss_mb'], 0)}"
    if split:
        rss += f" (deliver {_fmt(g.get('deliver_peak_rss_mb'), 0)})"
    lines += [
        f"| p50 ms | {_med(c, 'p50_ms', 1)} | {_med(g, 'p50_ms', 1)} | |",
        f"| p99 ms | {_med(c, 'p99_ms', 1)} | {_med(g, 'p99_ms', 1)} | {_fmt(r['p99'], 2)} |",
        f"| p99.9 ms | {_med(c, 'p99_9_ms', 1)} | {_med(g, 'p99_9_ms', 1)} | |",
        f"| peak RSS MB | {_fmt(c['peak_rss_mb'], 0)} | {rss} | |",
        f"| events delivered/s | | {_med(g, 'events_delivered_per_s')} | |",
        f"| events delivered per hit answered | | {_med(g, 'events_per_hit', 3)} | sent: "
        f"{_fmt(side.get('events_per_hit_sent'), 3)} |",
        "| debugger records dropped (the ledger fell behind) | | "
        + (
            f"{'some (logged)' if g.get('ledger_dropped_logged') else 'none logged'} | |"
            if split
            else f"{g.get('ledger_records_dropped', '-')} (all rounds) | |"
        ),
        f"| events per TikTok request (while loaded) | | "
        f"{_med(g, 'events_per_request_steady')} | |",
        f"| hit → TikTok p50 / p99 ms (steady) | | {_med(g, 'hit_to_tiktok_p50_ms')} / "
        f"{_med(g, 'hit_to_tiktok_p99_ms')} | |",
        f"| load generator's CPU use % (of its core) | {_med(c, 'loadgen_cpu_pct')} | "
        f"{_med(g, 'loadgen_cpu_pct')} | |",
        f"| CPU 1 busy % (the load's side) | {_med(c, 'client_cpu_busy_pct')} | "
        f"{_med(g, 'client_cpu_busy_pct')} | |",
        f"| other load on the server's CPU % | {_med(c, 'other_load_on_server_cpu_pct')} | "
        f"{_med(g, 'other_load_on_server_cpu_pct')} | |",
        "",
        f"**Issue 13's targets ({'collection role alone' if split else 'all in one process'})"
        f":** throughput {_fmt(r['throughput'], 2)} of the ceiling (target ≥ "
        f"{_fmt(t['throughput'], 2)}: {_met(met['throughput'])}), CPU per hit "
        f"{_fmt(r['cpu_per_hit'], 2)}x (target ≤ {_fmt(t['cpu_per_hit'], 1)}x: "
        f"{_met(met['cpu_per_hit'])}).",
        "",
    ]
    return lines


def _met(ok: bool | None) -> str:
    return "met" if ok else "**not met**"


def _over_ceiling_cpu(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    """A gateway figure over the ceiling's CPU per hit (medians)."""
    top = (a.get(key) or {}).get("median")
    bottom = (b.get("cpu_us_per_hit") or {}).get("median")
    return round(top / bottom, 3) if top is not None and bottom else None


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


def write_between_markers(path: Path, marker: str, text: str) -> None:
    """Replace what stands between `<!-- marker:start -->` and `<!-- marker:end -->`."""
    content = path.read_text(encoding="utf-8")
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    head, found, rest = content.partition(start)
    _, found_end, tail = rest.partition(end)
    if not (found and found_end):
        raise ValueError(f"{path} has no {start} ... {end}")
    path.write_text(f"{head}{start}\n{text.strip()}\n{end}{tail}", encoding="utf-8")
