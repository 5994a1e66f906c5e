"""Command line: `gateway serve`, `gateway migrate`, `gateway migrate-config`. The only place
that reads the environment and runs servers."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from gateway.collect.demo import DEMO_SOURCE_ID
from gateway.core.errors import GatewayError, SettingsError
from gateway.core.logs import configure_logging
from gateway.core.settings import Settings
from gateway.serve import ClientFaults, ConnectionGuard, ConnectionLimits, start_server
from gateway.wiring import Role, make_data_dir, resolve_keys, wire

log = logging.getLogger("gateway")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the collection and admin servers and delivery")
    serve.add_argument("--config", type=Path, help="TOML file of settings (environment wins)")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the ports")
    serve.add_argument(
        "--role",
        type=Role,
        choices=list(Role),
        default=Role.ALL,
        help="what this process runs (default: all)",
    )
    migrate = commands.add_parser(
        "migrate-config", help="copy sources and integrations into another configuration store"
    )
    migrate.add_argument("--config", type=Path, help="TOML file of settings (environment wins)")
    migrate.add_argument(
        "--from", dest="from_url", help="store to read (default: GATEWAY_DATABASE_URL or SQLite)"
    )
    migrate.add_argument("--to", dest="to_url", required=True, help="e.g. postgresql://…")
    queue = commands.add_parser(
        "migrate", help="move the former queue file's events onto the hit log (also on start)"
    )
    queue.add_argument("--config", type=Path, help="TOML file of settings (environment wins)")
    queue.add_argument(
        "--queue-file", type=Path, help="the former queue file (default: queue.db in the data dir)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "migrate-config":
        return _migrate_config(args)
    if args.command == "migrate":
        return _migrate_queue(args)
    try:
        settings = Settings.from_sources(os.environ, args.config)
        if args.workers < 1 or args.workers > 64:
            raise SettingsError("--workers", "must be between 1 and 64")
        # Whatever the process creates (SQLite's files, keys, anything a library writes) is
        # its user's alone; the code also gives each file its mode, this is the safety net.
        os.umask(0o077)
        make_data_dir(settings.data_dir)
        admin_tokens, secret_keys, generated = resolve_keys(settings)
    except SettingsError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gateway: cannot use the data directory: {exc}", file=sys.stderr)
        return 2
    # Resolved once here, so worker processes share the same keys and nobody races to create them.
    settings = dataclasses.replace(settings, admin_tokens=admin_tokens, secret_keys=secret_keys)
    configure_logging(
        settings.log_format,
        settings.log_level,
        secrets=[s.reveal() for s in (*admin_tokens, *secret_keys)],
    )
    _print_banner(settings, args.role, generated)
    if args.workers == 1:
        return _run_process(settings, args.role, 0, reuse_port=False)
    return _supervise(settings, args.role, args.workers)


def _migrate_config(args: argparse.Namespace) -> int:
    from gateway.wiring import migrate_config

    try:
        settings = Settings.from_sources(os.environ, args.config)
        # The URLs are checked like GATEWAY_DATABASE_URL is.
        Settings.from_mapping({"GATEWAY_DATABASE_URL": args.to_url})
        from_url = args.from_url or settings.database_url
        if args.from_url:
            Settings.from_mapping({"GATEWAY_DATABASE_URL": args.from_url})
        copied = asyncio.run(migrate_config(settings, from_url, args.to_url))
    except SettingsError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"gateway: migrate-config failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"copied {copied.sources} sources and {copied.integrations} integrations"
        f" ({copied.skipped} already there, left alone)"
    )
    return 0


def _migrate_queue(args: argparse.Namespace) -> int:
    from gateway.wiring import migrate_queue

    try:
        settings = Settings.from_sources(os.environ, args.config)
        os.umask(0o077)
        moved = asyncio.run(migrate_queue(settings, args.queue_file))
    except SettingsError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except (GatewayError, ValueError, OSError) as exc:
        print(f"gateway: migrate failed: {exc}", file=sys.stderr)
        return 1
    if moved is None:
        print("no former queue file to migrate")
        return 0
    print(
        f"moved {sum(moved.queued.values())} queued events and"
        f" {sum(moved.dead_letters.values())} dead letters onto the hit log"
        f" ({moved.orphaned} of deleted integrations left behind); the file is now"
        f" {moved.renamed_to}"
    )
    return 0


def _print_banner(settings: Settings, role: Role, generated_token: str | None) -> None:
    lines = [f"gateway: role {role}, data in {settings.data_dir.resolve()}"]
    if role in (Role.ALL, Role.COLLECT):
        url = settings.collect_url
        lines.append(f"  collection endpoint: {url}/v1/t  (tag: {url}/df.js)")
        lines.append(f"  demo shop:           {url}/demo  (hits to source {DEMO_SOURCE_ID})")
    if role in (Role.ALL, Role.ADMIN):
        lines.append(
            f"  Management API:      {settings.admin_url}/v1/admin/  (UI: {settings.admin_url}/)"
        )
    if generated_token:
        lines.append(f"  admin token (shown once, kept in {settings.data_dir / 'admin_token'}):")
        lines.append(f"    {generated_token}")
    elif not os.environ.get("GATEWAY_ADMIN_TOKEN"):
        lines.append(f"  admin token: in {settings.data_dir / 'admin_token'}")
    print("\n".join(lines), flush=True)


def _run_process(settings: Settings, role: Role, index: int, *, reuse_port: bool) -> int:
    try:
        import uvloop

        uvloop.run(serve(settings, role, index, reuse_port=reuse_port))
    except ImportError:  # uvloop is optional where it cannot be installed
        asyncio.run(serve(settings, role, index, reuse_port=reuse_port))
    except GatewayError as exc:
        log.error("gateway stopped: %s", exc)
        return 1
    except OSError as exc:  # typically a port already in use
        log.error("gateway stopped: %s", exc)
        return 1
    return 0


def _worker_main(settings: Settings, role: Role, index: int) -> None:
    configure_logging(
        settings.log_format,
        settings.log_level,
        secrets=[s.reveal() for s in (*settings.admin_tokens, *settings.secret_keys)],
    )
    sys.exit(_run_process(settings, role, index, reuse_port=True))


def _supervise(settings: Settings, role: Role, workers: int) -> int:
    """Run N processes on shared ports (SO_REUSEPORT); forward SIGTERM and wait for them."""
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker_main, args=(settings, role, i), name=f"gateway-{i}")
        for i in range(workers)
    ]
    for process in processes:
        process.start()

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = []
    for process in processes:
        process.join()
        codes.append(process.exitcode or 0)
    return max(codes)


async def serve(settings: Settings, role: Role, index: int, *, reuse_port: bool) -> None:
    """Run one process's servers until SIGTERM/SIGINT, then shut down without losing events."""
    from gateway.admin.api import create_admin_app
    from gateway.collect.app import create_collect_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    # With several processes, one delivers: a token bucket per process would multiply the rate.
    run_worker = role in (Role.ALL, Role.DELIVER) and index == 0
    async with wire(settings, run_worker=run_worker) as wired:
        # Each port counts its own connections; faults from both go to one metric and log.
        limits = ConnectionLimits.from_settings(settings)
        faults = ClientFaults(wired.metrics.client_faults)
        servers: list[tuple[web.Application, str, int]] = []
        if role in (Role.ALL, Role.COLLECT):
            servers.append(
                (create_collect_app(wired.collect), settings.host, settings.collect_port)
            )
        if role in (Role.ALL, Role.ADMIN):
            servers.append(
                (create_admin_app(wired.admin), settings.admin_bind_host, settings.admin_port)
            )
        runners: list[web.AppRunner] = []
        for app, host, port in servers:
            runner, _ = await start_server(
                app,
                host,
                port,
                ConnectionGuard(limits, faults),
                shutdown_timeout_s=settings.shutdown_timeout_s,
                reuse_port=reuse_port,
            )
            runners.append(runner)
        _tune_garbage_collector()
        log.info("gateway process %d ready (role %s)", index, role)
        await stop.wait()
        log.info("shutting down: no new hits; finishing in-flight work")
        for runner in runners:
            # Closes the listening sockets first, then waits (GATEWAY_SHUTDOWN_TIMEOUT_S at most)
            # for requests being handled. The delivery worker stops after, in the wiring's exit:
            # its requests to TikTok get the same time to finish; the rest stays queued.
            await runner.cleanup()
    log.info("gateway process %d stopped", index)


# A hit allocates a few hundred objects (the request, its headers, the decoded hit, the event,
# the ledger's record), nearly all freed by reference counting. With CPython's default threshold
# (700) the cyclic collector ran several times a request and walked every buffered ledger record
# and queued batch each time: the benchmark measured ~9% of the CPU per hit. Collect more rarely.
GC_THRESHOLDS = (50_000, 20, 100)


def _tune_garbage_collector() -> None:
    """Freeze what start-up built (config, apps, modules) and collect cycles less often."""
    gc.collect()
    gc.freeze()  # start-up objects live as long as the process: never scan them again
    gc.set_threshold(*GC_THRESHOLDS)
