"""The benchmark's processes and what it reads of them: starting servers pinned to a CPU, HTTP
calls to them, and their CPU time and memory from /proc.

Pinning (with two or more CPUs): the server under test on CPU 0, wrk, the TikTok double and the
profiler on CPU 1 (`Pinning`); `CpuWindow` measures a server's CPU over a round and what else
ran on its CPU meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- small helpers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(
    method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 10.0
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def wait_http(url: str, process: subprocess.Popen[bytes], within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=1) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {within_s} s")


def descendants(pid: int) -> list[int]:
    """The pid and every process below it (a --workers N gateway is a tree)."""
    found = [pid]
    index = 0
    while index < len(found):
        task_dir = Path(f"/proc/{found[index]}/task")
        index += 1
        with contextlib.suppress(OSError):
            for task in task_dir.iterdir():
                with contextlib.suppress(OSError):
                    found += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process tree, from /proc/<pid>/stat."""
    total = 0
    for each in descendants(pid):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{each}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLK_TCK


def cpu_busy_s(cpu: str | None = None) -> float:
    """Busy time of one CPU ("0") or of all, from /proc/stat: everything but idle and iowait
    (steal counts as busy: another guest had the CPU)."""
    name = "cpu" if cpu is None else f"cpu{cpu}"
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            parts = line.split()
            if parts and parts[0] == name:
                v = [int(x) for x in parts[1:9]]
                return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK
    return 0.0


def own_cpu_s() -> float:
    """CPU time of this harness and every child it has waited for (servers, wrk, ...)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class CpuWindow:
    """Measures one server's CPU over a window, and what else ran on its CPU meanwhile."""

    pid: int
    cpu: str | None  # the CPU the server is pinned to, or None
    started: float = 0.0
    proc0: float = 0.0
    busy0: float = 0.0

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self.proc0 = cpu_seconds(self.pid)
        self.busy0 = cpu_busy_s(self.cpu) if self.cpu is not None else 0.0

    def close(self) -> tuple[float, float | None]:
        """(the server's CPU seconds, other work on its CPU in % of that CPU, when pinned)."""
        used = cpu_seconds(self.pid) - self.proc0
        if self.cpu is None:
            return used, None
        elapsed = time.monotonic() - self.started
        other = cpu_busy_s(self.cpu) - self.busy0 - used
        return used, round(max(0.0, other) / elapsed * 100, 1) if elapsed else None


@dataclass
class BusyWindow:
    """How busy one CPU (or all, with None) was over a window, in % of it."""

    cpu: str | None
    started: float = 0.0
    busy0: float = 0.0

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self.busy0 = cpu_busy_s(self.cpu)

    def busy_pct(self) -> float | None:
        elapsed = time.monotonic() - self.started
        if not elapsed:
            return None
        nproc = 1 if self.cpu is not None else os.cpu_count() or 1
        return round((cpu_busy_s(self.cpu) - self.busy0) / (elapsed * nproc) * 100, 1)


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of the process tree, summed, in MB."""
    out = {"rss_mb": 0.0, "peak_rss_mb": 0.0}
    for each in descendants(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out["rss_mb"] += int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    out["peak_rss_mb"] += int(line.split()[1]) / 1024
    return out


# --- processes -------------------------------------------------------------------------------


@dataclass
class Pinning:
    enabled: bool
    server: str = "0"
    client: str = "1"

    def prefix(self, cpus: str | None) -> list[str]:
        if not self.enabled or cpus is None or not shutil.which("taskset"):
            return []
        return ["taskset", "-c", cpus]


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn(name: str, cmd: list[str], env: dict[str, str], log_path: Path) -> Proc:
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
    return Proc(name, process, log_path)


def python_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


@dataclass
class SinkProc:
    proc: Proc
    url: str

    def stats(
        self, sent_before: float | None = None, arrived_before: float | None = None
    ) -> dict[str, Any]:
        """The double's counts; hit-to-TikTok of hits sent before `sent_before` (epoch s), the
        mean batch of requests arrived before `arrived_before`."""
        query = []
        if sent_before is not None:
            query.append(f"sent_before_us={sent_before * 1e6:.0f}")
        if arrived_before is not None:
            query.append(f"arrived_before_us={arrived_before * 1e6:.0f}")
        suffix = "?" + "&".join(query) if query else ""
        return dict(http("GET", f"{self.url}/stats{suffix}", timeout=60))

    def reset(self) -> None:
        http("POST", f"{self.url}/reset", {})

    def mode(self, answer: str) -> None:
        http("POST", f"{self.url}/mode?answer={answer}", {})

    def track_ids(self, on: bool) -> None:
        http("POST", f"{self.url}/track-ids?on={int(on)}", {})

    def ids(self) -> dict[str, Any]:
        return dict(http("GET", f"{self.url}/ids", timeout=60))

    @property
    def tiktok_url(self) -> str:
        return f"{self.url}/open_api/v1.3/event/track/"


def start_sink(workdir: Path, pin: Pinning) -> SinkProc:
    port = free_port()
    cmd = [*pin.prefix(pin.client), sys.executable, "-m", "bench.sink", "--port", str(port)]
    proc = spawn("sink", cmd, python_env(), workdir / "sink.log")
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/stats", proc.process)
    return SinkProc(proc, url)


def start_ceiling(workdir: Path, pin: Pinning) -> tuple[Proc, str]:
    port = free_port()
    cmd = [*pin.prefix(pin.server), sys.executable, "-m", "bench.ceiling", "--port", str(port)]
    proc = spawn("ceiling", cmd, python_env(), workdir / "ceiling.log")
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", proc.process)
    return proc, url
