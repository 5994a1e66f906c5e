"""Where the gateway's time goes: a summary of py-spy's raw (collapsed stack) output.

`bench.run --phases profile` records the gateway under load with
`py-spy record --format raw --threads`, and keeps the raw file in bench/results/. Each line of it
is one distinct stack, outermost frame first, and the number of samples that saw it:

    thread (0x7F..);<module> (gateway/__main__.py:3);...;read (aiohttp/streams.py:380) 17

`summarise` turns that into the tables bench/README.md shows: samples per thread, the functions
where samples stopped (self time) and the functions on the stack (inclusive time), in percent of
the samples of the event loop's thread (the hot path runs there; the SQLite threads are shown
apart). `python -m bench.profile FILE [--markdown]` prints them.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent  # the checkout: its paths are shown relative
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_SITE = re.compile(r".*/(site-packages|lib/python3\.\d+)/")
# Frames of our own harness or the interpreter's start-up that carry no information.
_NOISE = ("<module>", "_run_module_as_main", "_run_code")


def _frame_name(frame: str) -> tuple[str, str]:
    """("function (file)", "package") for a py-spy frame "function (path:line)"."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), "?"
    path = _SITE.sub("", match.group("file"))
    path = path.split(f"{_ROOT}/", 1)[-1]
    package = path.split("/", 1)[0].removesuffix(".py") if "/" in path else path
    return f"{match.group('func')} ({path})", package


def parse(raw: str) -> list[tuple[str, list[str], int]]:
    """(thread name, frames outermost first, samples) per line."""
    stacks = []
    for line in raw.splitlines():
        line = line.strip()
        if not line:
            continue
        body, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = body.split(";")
        thread = "?"
        if frames and frames[0].startswith(("thread ", "process ")):
            # "thread (26789): MainThread" -> "MainThread"
            thread = frames.pop(0).rpartition(": ")[2] or "?"
        stacks.append((thread, frames, int(count)))
    return stacks


def _thread_label(thread: str) -> str:
    if thread == "MainThread":
        return "event loop (MainThread)"
    # gateway/core/sqlite.py names its connection threads after their database: queue-writer_0, ...
    return f"{thread.rsplit('_', 1)[0]} thread"


def summarise(raw: str, top: int = 25) -> dict[str, Any]:
    stacks = parse(raw)
    by_thread: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    loop_samples = 0
    for thread, frames, count in stacks:
        label = _thread_label(thread)
        by_thread[label] += count
        if thread != "MainThread" or not frames:
            continue
        loop_samples += count
        names = [_frame_name(f) for f in frames]
        self_name, package = names[-1]
        if self_name.startswith("Runner.run ("):
            # Nothing in Python below the loop's run: uvloop's own C code is running (polling,
            # socket reads and writes, transports, Cython callbacks).
            self_name, package = "uvloop/libuv C code (I/O, transports, callbacks)", "uvloop"
        self_time[self_name] += count
        packages[package] += count
        for name in {n for n, _ in names if not n.startswith(_NOISE)}:
            inclusive[name] += count
    total = sum(by_thread.values())

    def table(counter: Counter[str], denominator: int, rows: int = top) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": n, "pct": round(100 * n / denominator, 1)}
            for name, n in counter.most_common(rows)
        ]

    loop = max(loop_samples, 1)
    return {
        "samples": total,
        "samples_by_thread": {k: v for k, v in by_thread.most_common()},
        "event_loop_samples": loop_samples,
        "self_pct_of_loop": table(self_time, loop),
        "inclusive_pct_of_loop": table(inclusive, loop, 2 * top),
        "self_pct_by_package": table(packages, loop),
    }


def markdown(summary: dict[str, Any], top: int = 15) -> str:
    """The summary as the tables bench/README.md shows: threads, self time, packages."""
    total = max(summary["samples"], 1)
    lines = ["| thread | % of samples |", "|---|---:|"]
    lines += [
        f"| {name} | {100 * n / total:.1f} |" for name, n in summary["samples_by_thread"].items()
    ]
    lines += ["", "| % of the loop (self) | function |", "|---:|---|"]
    lines += [
        f"| {row['pct']} | `{row['function']}` |" for row in summary["self_pct_of_loop"][:top]
    ]
    lines += ["", "| % of the loop (inclusive) | function |", "|---:|---|"]
    lines += [
        f"| {row['pct']} | `{row['function']}` |"
        for row in summary["inclusive_pct_of_loop"][: 2 * top]
    ]
    lines += ["", "| % of the loop | package |", "|---:|---|"]
    lines += [f"| {row['pct']} | {row['function']} |" for row in summary["self_pct_by_package"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw", help="py-spy record --format raw output")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--markdown", action="store_true", help="tables, not JSON")
    args = parser.parse_args()
    with open(args.raw, encoding="utf-8") as file:
        summary = summarise(file.read(), args.top)
    print(markdown(summary, args.top) if args.markdown else json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
