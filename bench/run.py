"""The benchmark: the gateway against the bare aiohttp + uvloop ceiling, side by side.

    make bench                       # everything, ~10 minutes; writes bench/results/latest.json
    python -m bench.run --phases compare --rounds 3 --duration 10
    python -m bench.run --smoke      # a few seconds of each phase (what tests/test_bench.py runs)

Phases (see bench/README.md for what each measures and how to read it):

    compare    ceiling and gateway (all in one process) rounds, alternated, same load (closed
               loop, fixed concurrency)
    roles      the same against `--role collect` alone, `--role deliver` in another process
    sustained  80% of the gateway's maximum, paced: p99, backlog, hit-to-TikTok, p99 vs the ceiling
    ratelimit  the same load with TikTok's rate limit as the constraint: batch sizes
    workers    --workers 2 against 1, and an exact lost/duplicated check across workers
    redis      SQLite, Redis + PostgreSQL with 1 replica and with 2 replicas, alternated
    outage     a million hits queued while TikTok answers 503: memory, disk per queued hit
    micro      the hit log alone, collection's and delivery's pure parts (bench/micro.py)
    profile    py-spy on the gateway under load, in one process and as two roles

Pinning (with two or more CPUs): the server under test on CPU 0, wrk, the TikTok double and the
profiler on CPU 1 (with the roles phase's deliver and admin processes); the workers phase and
the redis phase's two replicas let everything float on all CPUs (they say so).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import shared, workload
from bench.gateways import GatewayProc, SplitGateway, start_gateway, start_split
from bench.procs import (
    BusyWindow,
    CpuWindow,
    Pinning,
    Proc,
    SinkProc,
    cpu_busy_s,
    cpu_seconds,
    memory_mb,
    own_cpu_s,
    python_env,
    start_ceiling,
    start_sink,
)
from bench.report import table, write_between_markers

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
ALL_PHASES = (
    "compare",
    "roles",
    "sustained",
    "ratelimit",
    "workers",
    "redis",
    "outage",
    "micro",
    "profile",
)
PIXEL = "CBENCHPIXEL000000001"
# The ledger has written all it buffered once its count stood still this long (it lingers 1 s).
LEDGER_IDLE_S = 1.5
CLK_TCK = os.sysconf("SC_CLK_TCK")
BATCH_DATA, BATCH_HITS = "batch.lua", 100  # the outage phase's /v1/batch bodies
# Issue 13's targets, against the ceiling: everything in one process (`make run`), and the
# collection role alone on its core (delivery in another process).
COMPARE_TARGETS = {"throughput": 0.55, "cpu_per_hit": 1.8}
ROLES_TARGETS = {"throughput": 0.65, "cpu_per_hit": 1.5}
# Issue 13: p99 at 80% of the gateway's capacity, paced.
SUSTAINED_P99_TARGET_MS = 5.0
# What a side-by-side phase reports of both sides, and of the gateway alone.
SIDE_KEYS = [
    "hits_per_s",
    "p50_ms",
    "p99_ms",
    "p99_9_ms",
    "cpu_us_per_hit",
    "loadgen_cpu_pct",
    "other_load_on_server_cpu_pct",
    "client_cpu_busy_pct",
]
GATEWAY_KEYS = [
    "events_delivered_per_s",
    "events_per_request",
    "events_per_request_steady",
    "hit_to_tiktok_p50_ms",
    "hit_to_tiktok_p99_ms",
    "hit_to_tiktok_all_p99_ms",
    "events_per_hit",
]


def spread(values: list[float | None]) -> dict[str, Any]:
    """Median and spread of the rounds: (max - min) / median, in percent."""
    clean = [v for v in values if v is not None]
    if not clean:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "rounds": values}
    median = statistics.median(clean)
    return {
        "median": round(median, 3),
        "min": round(min(clean), 3),
        "max": round(max(clean), 3),
        "spread_pct": round((max(clean) - min(clean)) / median * 100, 1) if median else None,
        "rounds": [round(v, 3) if v is not None else None for v in values],
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- the load generator ----------------------------------------------------------------------


@dataclass
class LoadGen:
    kind: str  # "wrk" or "python"
    workdir: Path
    pin: Pinning
    threads: int = 1
    random_ids: bool = False  # --random-ids: message ids that start at random (BENCH_RANDOM_IDS)

    def drive(
        self,
        url: str,
        data_file: Path,
        *,
        duration_s: float,
        connections: int,
        rate: float = 0.0,
        cpus: str | None = "client",
        sample: Callable[[], None] | None = None,
        stop_when: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """Run the load; call `sample` every 0.5 s meanwhile; `stop_when` ends it early."""
        cpu_set = self.pin.client if cpus == "client" else cpus
        cmd, env = self._command(url, data_file, duration_s, connections, rate, cpu_set)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out_path = self.workdir / "loadgen.out"
        started = time.monotonic()
        with out_path.open("wb") as out:
            process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
            stopped_early = False
            while process.poll() is None:
                if sample is not None:
                    sample()
                if stop_when is not None and stop_when():
                    process.send_signal(signal.SIGINT)
                    stopped_early = True
                    break
                time.sleep(0.5)
            process.wait(60)
        elapsed = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        text = out_path.read_text(errors="replace")
        result: dict[str, Any] = {}
        for line in text.splitlines():
            if line.startswith("BENCH_JSON "):
                result = json.loads(line.removeprefix("BENCH_JSON "))
        if not result and not stopped_early:
            raise RuntimeError(f"the load generator printed no result:\n{text[-2000:]}")
        loadgen_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        result["loadgen_cpu_s"] = round(loadgen_cpu, 3)
        result["loadgen_cpu_pct"] = round(100 * loadgen_cpu / elapsed, 1) if elapsed else None
        result["elapsed_s"] = round(elapsed, 3)
        return result

    def _command(
        self,
        url: str,
        data_file: Path,
        duration_s: float,
        connections: int,
        rate: float,
        cpu_set: str | None,
        *,
        tag: int = 0,
        quantiles: bool = False,
    ) -> tuple[list[str], dict[str, str]]:
        """The load generator's command line and environment. `tag` keeps the message ids of
        several generators on one cluster apart; `quantiles` asks for QUANTILE_GRID."""
        env = python_env()
        env.update({"BENCH_DATA": str(data_file), "BENCH_RATE": str(rate), "BENCH_THREADS": "1"})
        env["BENCH_RANDOM_IDS"] = "1" if self.random_ids else "0"
        grid = ",".join(f"{p:g}" for p in shared.QUANTILE_GRID) if quantiles else ""
        if self.kind == "wrk":
            duration = max(1, round(duration_s))
            cmd = [
                *self.pin.prefix(cpu_set),
                "wrk",
                f"-t{self.threads}",
                f"-c{connections}",
                f"-d{duration}s",
                "--timeout",
                "10s",
                "--latency",
                "-s",
                str(BENCH / "hits.lua"),
                url,
            ]
            env["BENCH_THREADS"] = str(self.threads)
            env["BENCH_TID_BASE"] = str(100 * tag)
            env["BENCH_QUANTILES"] = grid
            return cmd, env
        cmd = [
            *self.pin.prefix(cpu_set),
            sys.executable,
            "-m",
            "bench.pyload",
            "--url",
            url,
            "--duration",
            str(duration_s),
            "--connections",
            str(connections),
            "--rate",
            str(rate),
            "--tag",
            f"py{tag}",
        ]
        if grid:
            cmd += ["--quantiles", grid]
        if data_file.name == BATCH_DATA:
            cmd += ["--batch-hits", str(BATCH_HITS)]
        return cmd, env

    def drive_many(
        self,
        urls: list[str],
        data_file: Path,
        *,
        duration_s: float,
        connections: int,
        cpus: str | None = "client",
    ) -> dict[str, Any]:
        """Closed-loop load on several servers at once (the replicas of a cluster): one load
        generator process per URL, `connections` split evenly between them, started together.
        Returns one result as `drive` does: requests and errors summed, the rate the sum of
        each one's rate, latency percentiles of all requests together (merged from each
        process's QUANTILE_GRID), and `parts` with each process's own result."""
        cpu_set = self.pin.client if cpus == "client" else cpus
        share = max(1, connections // len(urls))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        running = []
        for index, url in enumerate(urls):
            cmd, env = self._command(
                url, data_file, duration_s, share, 0.0, cpu_set, tag=index + 1, quantiles=True
            )
            out_path = self.workdir / f"loadgen-{index}.out"
            with out_path.open("wb") as out:
                process = subprocess.Popen(
                    cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
                )
            running.append((process, out_path))
        parts = []
        for process, out_path in running:
            process.wait(duration_s + 60)
            text = out_path.read_text(errors="replace")
            lines = [x for x in text.splitlines() if x.startswith("BENCH_JSON ")]
            if not lines:
                raise RuntimeError(f"the load generator printed no result:\n{text[-2000:]}")
            parts.append(json.loads(lines[-1].removeprefix("BENCH_JSON ")))
        elapsed = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        loadgen_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        requests = sum(int(x["requests"]) for x in parts)
        rate = sum(x["requests"] / (x["duration_us"] / 1e6) for x in parts if x["duration_us"])
        errors: dict[str, int] = {}
        for x in parts:
            for kind, count in x.get("errors", {}).items():
                errors[kind] = errors.get(kind, 0) + count
        tails = [(int(x["requests"]), x.get("quantiles") or []) for x in parts]
        latency = {
            key: shared.merged_percentile(tails, pct) or 0
            for key, pct in (("p50", 50.0), ("p99", 99.0), ("p99_9", 99.9))
        }
        return {
            "requests": requests,
            # The duration that makes requests / duration the summed rate.
            "duration_us": int(requests / rate * 1e6) if rate else 0,
            "errors": errors,
            "latency_us": latency,
            "loadgen_cpu_s": round(loadgen_cpu, 3),
            # Of one core, summed over the processes.
            "loadgen_cpu_pct": round(100 * loadgen_cpu / elapsed, 1) if elapsed else None,
            "elapsed_s": round(elapsed, 3),
            "parts": [
                {
                    "requests": x["requests"],
                    "hits_per_s": round(x["requests"] / (x["duration_us"] / 1e6), 1)
                    if x["duration_us"]
                    else None,
                    "p99_ms": round(x["latency_us"]["p99"] / 1000, 3),
                    "errors": sum(x.get("errors", {}).values()),
                }
                for x in parts
            ],
        }


def choose_loadgen(wanted: str, workdir: Path, pin: Pinning) -> LoadGen:
    if wanted in ("auto", "wrk") and shutil.which("wrk"):
        return LoadGen("wrk", workdir, pin)
    if wanted == "wrk":
        raise SystemExit("wrk is not installed: `apt-get install -y wrk` (or --loadgen python)")
    return LoadGen("python", workdir, pin)


def load_summary(
    result: dict[str, Any], cpu: tuple[float, float | None] | None = None
) -> dict[str, Any]:
    """hits/s, latency percentiles in ms, errors, CPU per hit from a load generator's result."""
    seconds = result.get("duration_us", 0) / 1e6 or result.get("elapsed_s", 0)
    hits = result.get("requests", 0)
    lat = result.get("latency_us", {})
    errors = result.get("errors", {})
    out = {
        "hits": hits,
        "duration_s": round(seconds, 3),
        "hits_per_s": round(hits / seconds, 1) if seconds else None,
        "p50_ms": round(lat.get("p50", 0) / 1000, 3),
        "p99_ms": round(lat.get("p99", 0) / 1000, 3),
        "p99_9_ms": round(lat.get("p99_9", 0) / 1000, 3),
        "errors": sum(errors.values()) if errors else 0,
        "loadgen_cpu_pct": result.get("loadgen_cpu_pct"),
    }
    if cpu is not None and hits:
        out["cpu_s"] = round(cpu[0], 3)
        out["cpu_us_per_hit"] = round(cpu[0] / hits * 1e6, 1)
        out["other_load_on_server_cpu_pct"] = cpu[1]
    return out


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    pin: Pinning
    loadgen: LoadGen
    sink: SinkProc
    data_file: Path
    results: dict[str, Any]
    ceiling: tuple[Proc, str] | None = None
    gateways: list[GatewayProc] = field(default_factory=list)
    # CPU that Redis and PostgreSQL spent for the redis phase: the run's "other load" leaves it
    # out, as it leaves out the harness's own processes.
    service_cpu_s: float = 0.0

    # helpers

    def gateway(self, name: str, cpus: str | None = "server", **kw: Any) -> GatewayProc:
        """Start a gateway; `cpus` "server" pins it to the server's CPU, None pins nothing."""
        cpus = self.pin.server if cpus == "server" else cpus
        gateway = start_gateway(self.workdir, name, self.sink.tiktok_url, cpus, self.pin, **kw)
        self.gateways.append(gateway)
        return gateway

    def retire(self, gateway: GatewayProc) -> None:
        gateway.stop()
        self.gateways.remove(gateway)

    def the_ceiling(self) -> tuple[Proc, str]:
        if self.ceiling is None:
            self.ceiling = start_ceiling(self.workdir, self.pin)
        return self.ceiling

    def split(self, name: str) -> SplitGateway:
        """A gateway as three processes on one data dir: collection pinned to the server's
        CPU, delivery and the Management API to the load generator's."""
        split = start_split(
            self.workdir,
            name,
            self.sink.tiktok_url,
            self.pin,
            collect_cpus=self.pin.server,
            other_cpus=self.pin.client,
        )
        self.gateways += split.processes
        return split

    def drain(self, *gateways: GatewayProc, timeout_s: float = 30.0) -> bool:
        """Wait until the gateway has delivered everything (its hit log's backlog is empty),
        the double saw it all, and the event ledger wrote what it had buffered (its writer
        lingers a second: its work is the gateway's too, and must fall inside the CPU window).
        Several processes of one gateway (roles, replicas) share the first one's log; the
        ledger of every data dir among them is watched."""
        ledgers = list({g.data_dir: g for g in gateways}.values())
        deadline = time.monotonic() + timeout_s
        last = -1
        ledger_written, ledger_still_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            events = self.sink.stats()["events"]
            written = sum(g.ledger_seq() or 0 for g in ledgers)
            if written != ledger_written:
                ledger_written, ledger_still_since = written, time.monotonic()
            ledger_idle = time.monotonic() - ledger_still_since >= LEDGER_IDLE_S
            if gateways[0].backlog() == 0 and events == last and ledger_idle:
                return True
            last = events
            time.sleep(0.3)
        return False

    def window(self, pid: int) -> CpuWindow:
        return CpuWindow(pid, self.pin.server if self.pin.enabled else None)

    def settle(self) -> None:
        time.sleep(self.args.settle)

    # phases

    def phase_compare(self) -> dict[str, Any]:
        """Everything in one process (`gateway serve`, as `make run` starts it)."""
        gateway = self.gateway("gateway-compare")
        out = self._side_by_side(gateway, [], COMPARE_TARGETS)
        self.retire(gateway)
        return out

    def phase_roles(self) -> dict[str, Any]:
        """`--role collect` alone on the server's CPU; `--role deliver` (and `--role admin`,
        idle) on the load generator's; CPU per hit of the collect process, the others apart."""
        split = self.split("gateway-roles")
        out = self._side_by_side(split.collect, [split.deliver, split.admin], ROLES_TARGETS)
        out["integrity"] = self._integrity([split.collect], drain_also=split.processes)
        out["pinning"] = (
            f"collect on CPU {self.pin.server}; deliver, admin, wrk and the TikTok double on CPU "
            f"{self.pin.client}"
            if self.pin.enabled
            else "none"
        )
        for gateway in split.processes:
            self.retire(gateway)
        return out

    def _side_by_side(
        self, gateway: GatewayProc, helpers: list[GatewayProc], targets: dict[str, float]
    ) -> dict[str, Any]:
        """Warm-up, then rounds of the ceiling and the gateway alternated, same load. `gateway`
        is the process under test (pinned like the ceiling); `helpers` are the gateway's other
        processes, whose CPU is reported apart."""
        a = self.args
        ceiling_proc, ceiling_url = self.the_ceiling()
        # A short warm-up of each, so neither round 1 pays for imports and first allocations.
        self.loadgen.drive(ceiling_url, self.data_file, duration_s=1, connections=a.connections)
        self.loadgen.drive(
            gateway.collect_url, self.data_file, duration_s=1, connections=a.connections
        )
        self.drain(gateway, *helpers)
        rounds: dict[str, list[dict[str, Any]]] = {"ceiling": [], "gateway": []}
        for _ in range(a.rounds):
            rounds["ceiling"].append(self._ceiling_round(ceiling_proc, ceiling_url))
            self.settle()
            rounds["gateway"].append(self._gateway_round(gateway, helpers))
            self.settle()

        def agg(side: str, key: str) -> dict[str, Any]:
            return spread([r.get(key) for r in rounds[side]])

        out: dict[str, Any] = {
            "ceiling": {k: agg("ceiling", k) for k in SIDE_KEYS},
            "gateway": {k: agg("gateway", k) for k in SIDE_KEYS + GATEWAY_KEYS},
            "rounds": rounds,
        }
        for helper in helpers:
            key = f"{helper.role}_cpu_us_per_hit"
            out["gateway"][key] = agg("gateway", key)
        if helpers:
            out["gateway"]["all_processes_cpu_us_per_hit"] = agg(
                "gateway", "all_processes_cpu_us_per_hit"
            )
        out["ceiling"]["peak_rss_mb"] = round(memory_mb(ceiling_proc.pid)["peak_rss_mb"], 1)
        out["gateway"]["peak_rss_mb"] = round(memory_mb(gateway.proc.pid)["peak_rss_mb"], 1)
        for helper in helpers:
            out["gateway"][f"{helper.role}_peak_rss_mb"] = round(
                memory_mb(helper.proc.pid)["peak_rss_mb"], 1
            )
        for side in ("ceiling", "gateway"):
            out[side]["errors"] = sum(r["errors"] for r in rounds[side])
        out["gateway"]["ledger_records_dropped"] = sum(
            r.get("ledger_records_dropped", 0) for r in rounds["gateway"]
        )
        out["gateway"]["ledger_dropped_logged"] = any(
            g.ledger_dropped_logged() for g in (gateway, *helpers)
        )
        out["gateway"]["drained"] = all(r["drained"] for r in rounds["gateway"])
        med = {
            side: {k: out[side][k]["median"] for k in SIDE_KEYS} for side in ("ceiling", "gateway")
        }
        out["ratios"] = {
            "throughput": ratio(med["gateway"]["hits_per_s"], med["ceiling"]["hits_per_s"]),
            "cpu_per_hit": ratio(
                med["gateway"]["cpu_us_per_hit"], med["ceiling"]["cpu_us_per_hit"]
            ),
            "p99": ratio(med["gateway"]["p99_ms"], med["ceiling"]["p99_ms"]),
        }
        out["targets"] = dict(targets)
        throughput, cpu = out["ratios"]["throughput"], out["ratios"]["cpu_per_hit"]
        out["targets_met"] = {
            "throughput": throughput is not None and throughput >= targets["throughput"],
            "cpu_per_hit": cpu is not None and cpu <= targets["cpu_per_hit"],
        }
        out["events_per_hit_sent"] = round(workload.events_per_hit(), 4)
        return out

    def _ceiling_round(self, ceiling_proc: Proc, ceiling_url: str) -> dict[str, Any]:
        a = self.args
        window, client = self.window(ceiling_proc.pid), self.client_window()
        result = self.loadgen.drive(
            ceiling_url, self.data_file, duration_s=a.duration, connections=a.connections
        )
        summary = load_summary(result, window.close())
        summary["client_cpu_busy_pct"] = client.busy_pct()
        return summary

    def _gateway_round(self, gateway: GatewayProc, helpers: list[GatewayProc]) -> dict[str, Any]:
        """One closed-loop round; the gateway's CPU (each process's) counts until its events
        reached TikTok: delivery is its work too."""
        a = self.args
        self.sink.reset()
        dropped_before = gateway.ledger_counts().get("dropped", 0.0)
        helper_windows = [(h, CpuWindow(h.proc.pid, None)) for h in helpers]
        window, client = self.window(gateway.proc.pid), self.client_window()
        result = self.loadgen.drive(
            gateway.collect_url, self.data_file, duration_s=a.duration, connections=a.connections
        )
        load_end, at_end = time.time(), self.sink.stats()
        client_busy = client.busy_pct()  # while the load ran: the load side's headroom
        drained = self.drain(gateway, *helpers)
        summary = load_summary(result, window.close())
        summary["client_cpu_busy_pct"] = client_busy
        hits = summary["hits"] or 0
        if hits and helpers:
            total = summary["cpu_s"]
            for helper, helper_window in helper_windows:
                used, _ = helper_window.close()
                summary[f"{helper.role}_cpu_us_per_hit"] = round(used / hits * 1e6, 1)
                total += used
            summary["all_processes_cpu_us_per_hit"] = round(total / hits * 1e6, 1)
        if gateway.admin_url:
            # Records the ledger dropped were never written: a gateway that kept up drops none.
            dropped = gateway.ledger_counts().get("dropped", 0.0) - dropped_before
            summary["ledger_records_dropped"] = int(dropped)
        summary.update(self._delivered(gateway, load_end, at_end, summary["duration_s"]))
        if hits:
            # Against the workload's events per hit: a loss check on every round.
            summary["events_per_hit"] = round(summary["events_delivered"] / hits, 4)
        summary["drained"] = drained
        return summary

    def client_window(self) -> BusyWindow:
        return BusyWindow(self.pin.client if self.pin.enabled else None)

    def gateway_max(self) -> float:
        compare = self.results.get("compare")
        if compare and compare["gateway"]["hits_per_s"]["median"]:
            return float(compare["gateway"]["hits_per_s"]["median"])
        if self.args.max_rate:
            return float(self.args.max_rate)
        # No compare phase: a quick closed-loop measure of this machine's gateway maximum.
        gateway = self.gateway("gateway-max")
        result = self.loadgen.drive(
            gateway.collect_url,
            self.data_file,
            duration_s=max(1.0, self.args.duration / 2),
            connections=self.args.connections,
        )
        self.retire(gateway)
        return float(load_summary(result)["hits_per_s"] or 100.0)

    def _paced(
        self,
        gateway: GatewayProc,
        rate: float,
        duration_s: float,
        helpers: list[GatewayProc] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Paced load on the gateway, sampling its backlog and memory; then drain (with the
        gateway's `helpers`, its processes that serve no collection). (load, backlog)."""
        samples: list[tuple[float, int, float]] = []
        started = time.monotonic()

        def sample() -> None:
            mem = memory_mb(gateway.proc.pid)
            samples.append((time.monotonic() - started, gateway.backlog(), mem["rss_mb"]))

        self.sink.reset()
        window = self.window(gateway.proc.pid)
        result = self.loadgen.drive(
            gateway.collect_url,
            self.data_file,
            duration_s=duration_s,
            connections=self.args.connections,
            rate=rate,
            sample=sample,
        )
        load_end, at_end = time.time(), self.sink.stats()
        drained = self.drain(gateway, *(helpers or []))
        load = load_summary(result, window.close())
        load["target_hits_per_s"] = round(rate, 1)
        load.update(self._delivered(gateway, load_end, at_end, load["duration_s"]))
        load["drained"] = drained
        return load, backlog(samples, load, gateway)

    def _delivered(
        self, gateway: GatewayProc, load_end: float, at_end: dict[str, Any], seconds: float
    ) -> dict[str, Any]:
        """What reached the TikTok double: rate, batch sizes, hit-to-TikTok percentiles.

        The percentiles leave out hits sent in the last batch wait (+ 0.5 s) of the load: those
        wait for a batch that no further traffic fills, which a steady stream never sees.
        `hit_to_tiktok_all_p99_ms` keeps them."""
        wait_s = int(gateway.settings.get("GATEWAY_BATCH_MAX_WAIT_MS", "1000")) / 1000
        # (At most half the run, so a short smoke run keeps some events.)
        after = self.sink.stats(
            sent_before=load_end - min(wait_s + 0.5, (seconds or 1) / 2), arrived_before=load_end
        )
        return {
            "events_delivered_per_s": round(at_end["events"] / (seconds or 1), 1),
            "events_per_request": _round(after["events_per_request"], 1),
            # Without the remainder sent after the load stopped (a batch no traffic filled).
            "events_per_request_steady": _round(after["events_per_request_steady"], 1),
            "tiktok_requests": after["requests"],
            "events_delivered": after["events"],
            "hit_to_tiktok_p50_ms": _round(after["hit_to_tiktok_ms"]["p50"], 1),
            "hit_to_tiktok_p99_ms": _round(after["hit_to_tiktok_ms"]["p99"], 1),
            "hit_to_tiktok_all_p99_ms": _round(after["hit_to_tiktok_all_ms"]["p99"], 1),
        }

    def phase_sustained(self) -> dict[str, Any]:
        a = self.args
        gw_max = self.gateway_max()
        rate = 0.8 * gw_max
        max_wait_ms = 1000  # the embedded default, which this phase runs on
        ceiling_proc, ceiling_url = self.the_ceiling()
        window = self.window(ceiling_proc.pid)
        ceiling_result = self.loadgen.drive(
            ceiling_url,
            self.data_file,
            duration_s=a.sustained_duration,
            connections=a.connections,
            rate=rate,
        )
        ceiling = load_summary(ceiling_result, window.close())
        self.settle()
        gateway = self.gateway("gateway-sustained")
        load, queue = self._paced(gateway, rate, a.sustained_duration)
        self.retire(gateway)
        p50 = load["hit_to_tiktok_p50_ms"]
        return {
            "gateway_max_hits_per_s": round(gw_max, 1),
            "rate_hits_per_s": round(rate, 1),
            "batch_max_wait_ms": max_wait_ms,
            "gateway": load,
            "ceiling": ceiling,
            "backlog": queue,
            "p99_ratio_same_rate": ratio(load["p99_ms"], ceiling["p99_ms"]),
            "cpu_per_hit_ratio_same_rate": ratio(
                load.get("cpu_us_per_hit"), ceiling.get("cpu_us_per_hit")
            ),
            "hit_to_tiktok_p50_within_target": (p50 is not None and p50 < max_wait_ms + 100),
            "p99_target_ms": SUSTAINED_P99_TARGET_MS,
            "p99_within_target": load["p99_ms"] <= SUSTAINED_P99_TARGET_MS,
            "roles": self._sustained_roles(gw_max),
        }

    def _sustained_roles(self, gw_max: float) -> dict[str, Any]:
        """The same paced load on the collect role (delivery in its own process), at 80% of
        what the roles phase measured (the all-in-one maximum without it): does delivery on the
        collection's event loop make the p99?"""
        roles = self.results.get("roles")
        measured = roles and "gateway" in roles and roles["gateway"]["hits_per_s"]["median"]
        rate = 0.8 * float(measured or gw_max)
        split = self.split("gateway-sustained-roles")
        load, queue = self._paced(
            split.collect, rate, self.args.sustained_duration, [split.deliver, split.admin]
        )
        for process in split.processes:
            self.retire(process)
        return {
            "rate_hits_per_s": round(rate, 1),
            "collect": load,
            "backlog": queue,
            "p99_within_target": load["p99_ms"] <= SUSTAINED_P99_TARGET_MS,
        }

    def phase_ratelimit(self) -> dict[str, Any]:
        a = self.args
        gw_max = self.gateway_max()
        rate = 0.8 * gw_max
        event_rate = rate * workload.events_per_hit()
        # TikTok's limit is the constraint: just enough requests for full batches (5% spare).
        rps = max(0.1, round(1.05 * event_rate / 500, 3))
        max_wait_ms = 200
        gateway = self.gateway(
            "gateway-ratelimit",
            settings={"GATEWAY_BATCH_MAX_WAIT_MS": str(max_wait_ms)},
            rate_limit_rps=rps,
            rate_limit_burst=1,
        )
        load, queue = self._paced(gateway, rate, a.sustained_duration)
        self.retire(gateway)
        return {
            "rate_hits_per_s": round(rate, 1),
            "expected_events_per_s": round(event_rate, 1),
            "rate_limit_rps": rps,
            "rate_limit_burst": 1,
            "batch_max_wait_ms": max_wait_ms,
            "gateway": load,
            "backlog": queue,
            "mean_batch_size": load["events_per_request_steady"],
            "mean_batch_size_with_tail": load["events_per_request"],
            "mean_batch_at_least_450": (load["events_per_request_steady"] or 0) >= 450,
            # When the gateway fell short of the target rate, fewer events arrive per token
            # than planned: no batcher can then fill 450. This says what the arrivals allowed.
            "arrivals_per_token": round(load["events_delivered_per_s"] / rps, 1),
        }

    def phase_workers(self) -> dict[str, Any]:
        a = self.args
        cpus = None  # everything floats: two cores cannot give the load generator its own
        single = self.gateway("gateway-w1", cpus=cpus)
        double = self.gateway("gateway-w2", cpus=cpus, workers=2)
        rounds: dict[str, list[dict[str, Any]]] = {"workers_1": [], "workers_2": []}
        for _ in range(max(1, a.rounds)):
            for key, gateway in (("workers_1", single), ("workers_2", double)):
                self.sink.reset()
                window = CpuWindow(gateway.proc.pid, None)
                result = self.loadgen.drive(
                    gateway.collect_url,
                    self.data_file,
                    duration_s=a.duration,
                    connections=a.connections,
                    cpus=None,
                )
                self.drain(gateway)
                rounds[key].append(load_summary(result, window.close()))
                self.settle()
        self.retire(single)
        integrity = self._integrity([double])
        self.retire(double)
        one = spread([r["hits_per_s"] for r in rounds["workers_1"]])
        two = spread([r["hits_per_s"] for r in rounds["workers_2"]])
        return {
            "pinning": "none: the gateway processes, wrk and the TikTok double share all CPUs",
            "workers_1": {"hits_per_s": one, "rounds": rounds["workers_1"]},
            "workers_2": {"hits_per_s": two, "rounds": rounds["workers_2"]},
            "scaling": ratio(two["median"], one["median"]),
            "integrity": integrity,
        }

    # The redis phase: the embedded default against Redis + PostgreSQL, 1 and 2 replicas.

    REDIS_MODES = ("sqlite", "redis_1", "redis_2")

    def phase_redis(self) -> dict[str, Any]:
        a = self.args
        services = shared.Services(a.redis_url, a.postgres_url)
        reason = services.unreachable()
        if reason is not None:
            if shared.require_services():
                raise RuntimeError(f"{reason} and GATEWAY_TEST_REQUIRE_SERVICES=1")
            return {"skipped": reason}
        redis0, pg0 = services.redis_cpu_s(), services.postgres_cpu_s()
        started: list[GatewayProc] = []
        try:
            out = self._redis_modes(services, started)
        finally:
            # Stop the replicas before their keys and schema go, so none writes them again.
            for gateway in started:
                if gateway in self.gateways:
                    self.retire(gateway)
            pg1 = services.postgres_cpu_s()
            self.service_cpu_s += services.redis_cpu_s() - redis0
            self.service_cpu_s += pg1 - pg0 if pg0 is not None and pg1 is not None else 0.0
            cleanup = services.close()
        out["cleanup"] = cleanup
        return out

    def _redis_modes(self, services: shared.Services, started: list[GatewayProc]) -> dict[str, Any]:
        a = self.args

        def shared_gateway(name: str, prefix: str, schema: str, **kw: Any) -> GatewayProc:
            gateway = self.gateway(name, settings=services.gateway_settings(prefix, schema), **kw)
            gateway.backlog_fn = lambda: services.backlog(prefix)
            started.append(gateway)
            return gateway

        sqlite_gw = self.gateway("gateway-redis-sqlite")
        started.append(sqlite_gw)
        prefix_1, schema_1 = services.names("r1")
        one = shared_gateway("gateway-redis-r1", prefix_1, schema_1)
        # Two replicas: nothing pinned (two CPUs cannot give two servers and the load each
        # their own); the second replica reads the source and integration the first created.
        prefix_2, schema_2 = services.names("r2")
        two_a = shared_gateway("gateway-redis-r2a", prefix_2, schema_2, cpus=None)
        two_b = shared_gateway(
            "gateway-redis-r2b", prefix_2, schema_2, cpus=None, configure_it=False
        )
        modes: dict[str, tuple[list[GatewayProc], str | None]] = {
            "sqlite": ([sqlite_gw], "client"),
            "redis_1": ([one], "client"),
            "redis_2": ([two_a, two_b], None),
        }
        for targets, cpus in modes.values():  # warm-up: imports, first allocations, pools
            self.loadgen.drive_many(
                [g.collect_url for g in targets],
                self.data_file,
                duration_s=1,
                connections=a.connections,
                cpus=cpus,
            )
            self.drain(*targets)
        rounds: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
        for index in range(a.rounds):
            # Rotated: each mode takes each place in the order once every three rounds.
            shift = index % len(self.REDIS_MODES)
            for mode in self.REDIS_MODES[shift:] + self.REDIS_MODES[:shift]:
                targets, cpus = modes[mode]
                rounds[mode].append(self._cluster_round(services, targets, cpus))
                self.settle()
        integrity = self._integrity([two_a, two_b])

        keys = [
            "hits_per_s",
            "p50_ms",
            "p99_ms",
            "p99_9_ms",
            "cpu_us_per_hit",
            "redis_cpu_us_per_hit",
            "postgres_cpu_us_per_hit",
            "all_cpu_us_per_hit",
            "events_delivered_per_s",
            "events_per_request_steady",
            "hit_to_tiktok_p50_ms",
            "hit_to_tiktok_p99_ms",
            "events_per_hit",
            "loadgen_cpu_pct",
            "other_load_on_server_cpu_pct",
            "other_load_pct",
            "idle_gateways_cpu_pct",
        ]
        out: dict[str, Any] = {"events_per_hit_sent": round(workload.events_per_hit(), 4)}
        for mode, (targets, _) in modes.items():
            out[mode] = {k: spread([r.get(k) for r in rounds[mode]]) for k in keys}
            out[mode]["errors"] = sum(r["errors"] for r in rounds[mode])
            out[mode]["events_delivered"] = sum(r["events_delivered"] for r in rounds[mode])
            out[mode]["drained"] = all(r["drained"] for r in rounds[mode])
            out[mode]["peak_rss_mb"] = round(
                sum(memory_mb(g.proc.pid)["peak_rss_mb"] for g in targets), 1
            )
        med = {m: {k: out[m][k]["median"] for k in keys} for m in modes}
        out["ratios"] = {
            "redis_1_vs_sqlite_throughput": ratio(
                med["redis_1"]["hits_per_s"], med["sqlite"]["hits_per_s"]
            ),
            "redis_1_vs_sqlite_cpu_per_hit": ratio(
                med["redis_1"]["cpu_us_per_hit"], med["sqlite"]["cpu_us_per_hit"]
            ),
            "redis_1_vs_sqlite_p99": ratio(med["redis_1"]["p99_ms"], med["sqlite"]["p99_ms"]),
            "redis_2_vs_redis_1_throughput": ratio(
                med["redis_2"]["hits_per_s"], med["redis_1"]["hits_per_s"]
            ),
            "redis_2_vs_sqlite_throughput": ratio(
                med["redis_2"]["hits_per_s"], med["sqlite"]["hits_per_s"]
            ),
        }
        out["integrity"] = integrity
        # What a retained hit costs Redis: the log's streams keep every record for the
        # debugger's window, delivered or not (a queued one costs the same).
        out["streams"] = {
            mode: _per_record(services.stream_usage(prefix))
            for mode, prefix in (("redis_1", prefix_1), ("redis_2", prefix_2))
        }
        out["rounds"] = rounds
        out["redis"] = {**services.redis_info(), "url": services.redis_url}
        out["postgres_url"] = services.postgres_url
        out["pinning"] = {
            "sqlite, redis_1": (
                f"server on CPU {self.pin.server}; wrk and the TikTok double on CPU "
                f"{self.pin.client}"
                if self.pin.enabled
                else "none"
            ),
            "redis_2": "none: both replicas, both load generators and the TikTok double float",
            "redis and postgresql": "not pinned (the machine's services), on either CPU",
        }
        out["load"] = (
            f"{a.connections} connections on one replica; {a.connections // 2} on each of two "
            "replicas, one load generator process per replica, started together"
        )
        return out

    def _cluster_round(
        self, services: shared.Services, targets: list[GatewayProc], cpus: str | None
    ) -> dict[str, Any]:
        """One closed-loop round on one mode: the replicas' CPU until their events reached
        TikTok, Redis' and PostgreSQL's CPU over the same window, and what else the machine
        ran (busy CPU less this benchmark's processes and the two services)."""
        a = self.args
        pinned = cpus is not None and self.pin.enabled
        self.sink.reset()
        windows = [CpuWindow(g.proc.pid, self.pin.server if pinned else None) for g in targets]
        idle = [g.proc.pid for g in self.gateways if g not in targets]
        ours = [self.sink.proc.pid, *(g.proc.pid for g in self.gateways)]
        t0, busy0, own0 = time.monotonic(), cpu_busy_s(), own_cpu_s()
        ours0, idle0 = sum(cpu_seconds(pid) for pid in ours), sum(cpu_seconds(p) for p in idle)
        redis0, pg0 = services.redis_cpu_s(), services.postgres_cpu_s()
        result = self.loadgen.drive_many(
            [g.collect_url for g in targets],
            self.data_file,
            duration_s=a.duration,
            connections=a.connections,
            cpus=cpus,
        )
        load_end, at_end = time.time(), self.sink.stats()
        drained = self.drain(*targets)
        closed = [w.close() for w in windows]
        redis_s = services.redis_cpu_s() - redis0
        pg1 = services.postgres_cpu_s()
        pg_s = pg1 - pg0 if pg0 is not None and pg1 is not None else None
        elapsed = time.monotonic() - t0
        ours_s = sum(cpu_seconds(pid) for pid in ours) - ours0
        idle_s = sum(cpu_seconds(pid) for pid in idle) - idle0
        other = cpu_busy_s() - busy0 - (own_cpu_s() - own0) - ours_s - redis_s - (pg_s or 0.0)
        cpu = sum(used for used, _ in closed)
        summary = load_summary(result, (cpu, closed[0][1] if pinned else None))
        summary.update(self._delivered(targets[0], load_end, at_end, summary["duration_s"]))
        hits = summary["hits"] or 0
        uses_services = targets[0].backlog_fn is not None
        if hits and uses_services:
            summary["redis_cpu_us_per_hit"] = round(redis_s / hits * 1e6, 1)
            if pg_s is not None:
                summary["postgres_cpu_us_per_hit"] = round(pg_s / hits * 1e6, 1)
        if hits:
            summary["all_cpu_us_per_hit"] = round(
                (cpu + (redis_s + (pg_s or 0.0) if uses_services else 0.0)) / hits * 1e6, 1
            )
            # Against the workload's events per hit: a cheap loss check on every round.
            summary["events_per_hit"] = round(summary["events_delivered"] / hits, 4)
        nproc = os.cpu_count() or 1
        summary["other_load_pct"] = round(max(0.0, other) / (elapsed * nproc) * 100, 1)
        # The other modes' gateways, idle meanwhile (polling their store, heartbeats).
        summary["idle_gateways_cpu_pct"] = round(idle_s / elapsed * 100, 1)
        summary["drained"] = drained
        if len(result.get("parts", [])) > 1:
            summary["replicas"] = result["parts"]
        return summary

    def _integrity(
        self, targets: list[GatewayProc], drain_also: list[GatewayProc] | None = None
    ) -> dict[str, Any]:
        """Exact accounting with the Python client, one per target (a `--workers` server, or
        each replica of a cluster; each its own message id tag), 32 connections in all: every
        acknowledged id kept; drained (with `drain_also`, the gateway's processes that serve
        no collection), the double's ids must be those, once."""
        self.sink.reset()
        self.sink.track_ids(True)
        processes = []
        for index, gateway in enumerate(targets):
            cmd = [
                sys.executable,
                "-m",
                "bench.pyload",
                "--url",
                gateway.collect_url,
                "--duration",
                str(max(1.0, self.args.duration / 3)),
                "--connections",
                str(max(1, 32 // len(targets))),
                "--only-events",
                "--track-ids",
                "--tag",
                f"ck{index}",
            ]
            # To a file, not a pipe: a client blocked on a full pipe while the harness waits for
            # the other would stall (and a non-blocking stdout would tear its output).
            out_path = self.workdir / f"integrity-{index}.out"
            with out_path.open("wb") as out:
                process = subprocess.Popen(
                    cmd, env=python_env(), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
                )
            processes.append((process, out_path))
        acked: set[str] = set()
        acknowledged = 0
        for process, out_path in processes:
            process.wait(120)
            text = out_path.read_text(errors="replace")
            if "BENCH_JSON " not in text:
                raise RuntimeError(f"the integrity client printed no result:\n{text[-2000:]}")
            result = json.loads(text.split("BENCH_JSON ", 1)[1])
            acknowledged += len(result["acked_ids"])
            acked.update(result["acked_ids"])
        drained = self.drain(*targets, *(drain_also or []), timeout_s=60)
        seen = self.sink.ids()
        self.sink.track_ids(False)
        delivered = set(seen["ids"])
        return {
            "replicas": len(targets),
            "acknowledged": acknowledged,
            "acknowledged_unique": len(acked),
            "delivered_unique": len(delivered),
            "lost": len(acked - delivered),
            "duplicated": len(seen["duplicates"]),
            "delivered_not_acknowledged": len(delivered - acked),
            "drained": drained,
        }

    def phase_outage(self) -> dict[str, Any]:
        a = self.args
        target = a.outage_hits
        gateway = self.gateway("gateway-outage")
        self.sink.reset()
        self.sink.mode("503")
        batch_file = workload.write_lua_data(
            self.workdir / BATCH_DATA,
            identity_cookie=workload.sealed_identity_cookie(),
            batch_hits=BATCH_HITS,
        )
        peak = {"rss_mb": 0.0}
        waiting = {"now": 0}

        def sample() -> None:
            mem = memory_mb(gateway.proc.pid)
            peak["rss_mb"] = max(peak["rss_mb"], mem["rss_mb"])
            waiting["now"] = gateway.backlog()

        started = time.monotonic()
        fill = self.loadgen.drive(
            gateway.collect_url,
            batch_file,
            duration_s=a.outage_max_s,
            connections=8,
            sample=sample,
            stop_when=lambda: waiting["now"] >= target,
        )
        fill_s = time.monotonic() - started
        queued = gateway.backlog()
        # Every hit of the outage is still in the log (none was delivered): its files' size
        # over the hits waiting is what a queued hit costs on disk, index and WAL included.
        disk = _files_bytes(gateway.data_dir, "hitlog.db*")
        ledger_disk = _files_bytes(gateway.data_dir, "ledger.db*")
        # The outage goes on a while: the worker keeps trying (and failing) with backoff.
        hold_until = time.monotonic() + a.outage_hold_s
        while time.monotonic() < hold_until:
            sample()
            time.sleep(0.5)
        during = memory_mb(gateway.proc.pid)
        refused = self.sink.stats()["refused"]
        disk_after_hold = _files_bytes(gateway.data_dir, "hitlog.db*")
        # TikTok is back. The worker probes with a growing backoff while TikTok is down, so the
        # first delivery may come late: wait for it (up to the window), then time the drain.
        self.sink.mode("ok")
        self.sink.reset()
        back = time.monotonic()
        recover_until = back + a.outage_recover_s
        first_delivery: float | None = None
        before = gateway.backlog()
        events_at_first = 0
        while time.monotonic() < recover_until:
            sample()
            if first_delivery is None:
                events_at_first = self.sink.stats()["events"]
                if events_at_first > 0:
                    first_delivery = time.monotonic()
                    before = gateway.backlog()
                    recover_until = min(recover_until, first_delivery + a.outage_drain_s)
            time.sleep(0.5)
        after = gateway.backlog()
        events_drained = self.sink.stats()["events"] - events_at_first
        drain_s = time.monotonic() - first_delivery if first_delivery is not None else 0.0
        end = memory_mb(gateway.proc.pid)
        self.retire(gateway)
        return {
            "unit": "hits: the log's records past the cursor and the retries (one event each)",
            "hits_queued": queued,
            "target_hits": target,
            "fill_s": round(fill_s, 1),
            "fill_hits_per_s": round(queued / fill_s, 1) if fill_s else None,
            "fill_errors": sum(fill.get("errors", {}).values()) if fill.get("errors") else 0,
            "tiktok_refusals_during_outage": refused,
            "rss_mb_during_outage": round(during["rss_mb"], 1),
            "max_rss_mb_sampled": round(peak["rss_mb"], 1),
            "peak_rss_mb": round(end["peak_rss_mb"], 1),
            "rss_under_200_mb": end["peak_rss_mb"] < 200,
            "log_file_mb": round(disk / 2**20, 1),
            "log_file_mb_after_hold": round(disk_after_hold / 2**20, 1),
            "disk_bytes_per_queued_hit": round(disk / queued) if queued > 0 else None,
            "ledger_file_mb": round(ledger_disk / 2**20, 1),
            "recovery": {
                "waited_at_most_s": a.outage_recover_s,
                "first_delivery_after_s": (
                    round(first_delivery - back, 1) if first_delivery is not None else None
                ),
                "drain_s": round(drain_s, 1),
                "delivered_hits": before - after if first_delivery is not None else 0,
                "hits_per_s": round((before - after) / drain_s, 1) if drain_s else None,
                "events_per_s": round(events_drained / drain_s, 1) if drain_s else None,
                "left": after,
            },
        }

    def phase_micro(self) -> dict[str, Any]:
        cmd = [
            *self.pin.prefix(self.pin.server),
            sys.executable,
            "-m",
            "bench.micro",
            "--seconds",
            str(self.args.micro_seconds),
            "--json",
        ]
        out = subprocess.run(
            cmd, env=python_env(), capture_output=True, text=True, cwd=ROOT, check=True
        )
        return dict(json.loads(out.stdout.split("BENCH_JSON ", 1)[1]))

    def phase_profile(self) -> dict[str, Any]:
        """py-spy on everything in one process, then on the collect and deliver roles (both
        recorded at once, under the same load)."""
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            return {"skipped": "py-spy is not installed (pip install py-spy)"}
        gateway = self.gateway("gateway-profile")
        out = self._profiled(py_spy, {"all": gateway}, gateway.collect_url)
        self.retire(gateway)
        split = self.split("gateway-profile-roles")
        targets = {"collect": split.collect, "deliver": split.deliver}
        out.update(self._profiled(py_spy, targets, split.collect.collect_url))
        for process in split.processes:
            self.retire(process)
        return out

    def _profiled(
        self, py_spy: str, targets: dict[str, GatewayProc], url: str
    ) -> dict[str, dict[str, Any]]:
        """Record each target with py-spy while the compare load drives `url`; each one's
        summary, its raw stacks kept as bench/results/profile-<name>-latest.txt."""
        from bench import profile

        seconds = max(1, round(self.args.profile_duration))
        spies = {}
        for name, gateway in targets.items():
            raw = self.workdir / f"profile-{name}.txt"
            cmd = [
                *self.pin.prefix(self.pin.client),
                py_spy,
                "record",
                "--pid",
                str(gateway.proc.pid),
                "--duration",
                str(seconds),
                "--rate",
                "250",
                "--format",
                "raw",
                "--threads",
                "--nonblocking",
                "--output",
                str(raw),
            ]
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            spies[name] = (spy, raw)
        time.sleep(0.5)
        self.loadgen.drive(
            url, self.data_file, duration_s=seconds, connections=self.args.connections
        )
        out: dict[str, dict[str, Any]] = {}
        for name, (spy, raw) in spies.items():
            _, err = spy.communicate(timeout=60)
            if spy.returncode != 0 or not raw.exists():
                out[name] = {"skipped": f"py-spy failed: {err.decode(errors='replace')[-500:]}"}
                continue
            RESULTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(raw, RESULTS / f"profile-{name}-latest.txt")
            out[name] = profile.summarise(raw.read_text())
        return out

    def stop_gateways(self) -> None:
        for gateway in list(self.gateways):
            self.retire(gateway)

    def close(self) -> None:
        self.stop_gateways()
        if self.ceiling is not None:
            self.ceiling[0].stop()
        self.sink.proc.stop()


def _per_record(usage: dict[str, int]) -> dict[str, Any]:
    records = usage["records"]
    return {**usage, "bytes_per_record": round(usage["bytes"] / records) if records else None}


def _files_bytes(directory: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in directory.glob(pattern) if p.is_file())


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def backlog(
    samples: list[tuple[float, int, float]], load: dict[str, Any], gateway: GatewayProc
) -> dict[str, Any]:
    """Is the backlog bounded? The least-squares slope of the hits waiting over the run, against
    the arrival rate: bounded when the log kept under 2% of the arrivals waiting, or the run
    ends with under two batches' worth of hits waiting."""
    depths = [d for _, d, _ in samples if d >= 0]
    times = [t for t, d, _ in samples if d >= 0]
    slope = 0.0
    if len(depths) >= 3:
        mean_t, mean_d = statistics.fmean(times), statistics.fmean(depths)
        var = sum((t - mean_t) ** 2 for t in times)
        if var:
            slope = sum((t - mean_t) * (d - mean_d) for t, d in zip(times, depths, strict=True))
            slope /= var
    arrivals = load.get("hits_per_s") or 0.0
    max_events = int(gateway.settings.get("GATEWAY_BATCH_MAX_EVENTS", "500"))
    batch_hits = max_events / workload.events_per_hit()
    end_depth = depths[-1] if depths else 0
    return {
        "unit": "hits (hit log records past the cursor, and retries)",
        "samples": len(depths),
        "max_depth": max(depths, default=0),
        "end_depth": end_depth,
        "growth_hits_per_s": round(slope, 1),
        "bounded": end_depth <= 2 * batch_hits or slope < 0.02 * max(arrivals, 1.0),
        "max_rss_mb": round(max((r for _, _, r in samples), default=0.0), 1),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--phases", default=",".join(ALL_PHASES), help="comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per round")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--settle", type=float, default=2.0, help="pause between rounds (s)")
    parser.add_argument("--sustained-duration", type=float, default=15.0)
    parser.add_argument("--max-rate", type=float, default=0.0, help="gateway max if no compare")
    parser.add_argument("--outage-hits", type=int, default=1_000_000)
    parser.add_argument("--outage-max-s", type=float, default=300.0)
    parser.add_argument("--outage-hold-s", type=float, default=10.0)
    parser.add_argument("--outage-recover-s", type=float, default=60.0)
    parser.add_argument("--outage-drain-s", type=float, default=10.0)
    parser.add_argument("--micro-seconds", type=float, default=2.0)
    parser.add_argument("--profile-duration", type=float, default=15.0)
    parser.add_argument("--redis-url", default=shared.REDIS_URL, help="the redis phase's Redis")
    parser.add_argument(
        "--postgres-url", default=shared.POSTGRES_URL, help="the redis phase's PostgreSQL"
    )
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument(
        "--random-ids",
        action="store_true",
        help="message ids that start with random hex, as the tag's UUIDs (default: time-ordered)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--smoke", action="store_true", help="tiny durations: checks the harness")
    parser.add_argument(
        "--readme",
        action="store_true",
        help="write the table into bench/README.md, between its bench-table markers",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.duration, args.settle = 1, 1.0, 0.2
        args.sustained_duration, args.outage_hits, args.outage_hold_s = 1.0, 2_000, 0.5
        args.outage_recover_s, args.micro_seconds, args.profile_duration = 1.0, 0.2, 1.0
        args.outage_drain_s = 1.0
        args.connections = min(args.connections, 16)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    try:
        return _main(args, workdir)
    finally:
        # The outage phase leaves gigabytes of SQLite files there.
        if not os.environ.get("BENCH_KEEP_WORKDIR"):
            shutil.rmtree(workdir, ignore_errors=True)


def _main(args: argparse.Namespace, workdir: Path) -> int:
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = sorted(set(phases) - set(ALL_PHASES))
    if unknown:
        raise SystemExit(f"unknown phase(s): {', '.join(unknown)}")
    pin = Pinning(enabled=not args.no_pin and (os.cpu_count() or 1) >= 2)
    loadgen = choose_loadgen(args.loadgen, workdir, pin)
    loadgen.random_ids = args.random_ids
    identity = workload.sealed_identity_cookie()
    data_file = workload.write_lua_data(workdir / "hits.lua", identity_cookie=identity)
    results: dict[str, Any] = {
        "schema": 1,
        "taken_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "config": {
            "phases": phases,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "connections": args.connections,
            "loadgen": loadgen.kind,
            "random_ids": args.random_ids,
            "pinning": (
                {
                    "server": f"CPU {pin.server}",
                    "load generator and TikTok double": f"CPU {pin.client}",
                }
                if pin.enabled
                else "none"
            ),
            "events_per_hit": round(workload.events_per_hit(), 3),
            "smoke": args.smoke,
        },
    }
    print(f"bench: work dir {workdir}; load generator {loadgen.kind}", flush=True)
    wall0, busy0, own0 = time.monotonic(), cpu_busy_s(), own_cpu_s()
    sink = start_sink(workdir, pin)
    bench = Bench(args, workdir, pin, loadgen, sink, data_file, results)
    failed = []
    try:
        for phase in phases:
            print(f"bench: {phase} ...", flush=True)
            started = time.monotonic()
            try:
                results[phase] = getattr(bench, f"phase_{phase}")()
            except Exception:
                # One broken phase must not cost the others' figures: say so, go on, exit 1.
                failed.append(phase)
                results[phase] = {"error": traceback.format_exc()}
                print(f"bench: {phase} failed:\n{results[phase]['error']}", flush=True)
                bench.stop_gateways()
            results[phase]["phase_s"] = round(time.monotonic() - started, 1)
    finally:
        bench.close()
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    # What the machine did besides this benchmark (other jobs, steal): busy CPU time minus the
    # CPU time of this harness and all its processes, as a share of all CPUs over the run.
    wall = time.monotonic() - wall0
    other = cpu_busy_s() - busy0 - (own_cpu_s() - own0) - bench.service_cpu_s
    nproc = results["machine"]["nproc"] or 1
    results["machine"]["other_load_pct"] = round(max(0.0, other) / (wall * nproc) * 100, 1)
    results["busy_machine"] = results["machine"]["other_load_pct"] > 5.0
    results["table_md"] = table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(results["table_md"] + "\n", encoding="utf-8")
    print()
    print(results["table_md"])
    print(f"bench: results in {args.out}", flush=True)
    if args.readme and not args.smoke:
        write_between_markers(BENCH / "README.md", "bench-table", results["table_md"])
        print("bench: the table is in bench/README.md", flush=True)
    if failed:
        print(f"bench: failed phases: {', '.join(failed)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
