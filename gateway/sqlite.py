"""SQLite plumbing shared by the embedded queue and the embedded configuration store.

sqlite3 blocks (disk I/O, waiting for another process's lock), so each connection lives on a
thread of its own and the event loop awaits its results.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from gateway.errors import GatewayError, StoreError

P = ParamSpec("P")
T = TypeVar("T")


class ThreadConnection:
    """A sqlite3 connection that lives on one dedicated thread; the event loop awaits results.

    sqlite3 calls block (disk I/O, waiting for another process's lock), so none runs on the
    loop. A single worker thread also serialises this connection's use without locks.
    """

    def __init__(self, path: Path, name: str, busy_timeout_s: float = 10.0) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    async def open(self, query_only: bool = False) -> None:
        await self._submit(self._connect, query_only)

    async def run(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(connection, ...)` on the connection's thread.

        sqlite3 errors become `StoreError` here, the one boundary with the driver; the gateway's
        own errors (QueueFull, Conflict, ...) raised inside `fn` pass through unchanged.
        """

        def bound(conn: sqlite3.Connection) -> T:
            return fn(conn, *args, **kwargs)

        return await self._submit(self._call, bound)

    async def close(self) -> None:
        if self._conn is not None:
            await self._submit(self._disconnect)
        # Joining the thread blocks, so it happens off the loop.
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    async def _submit(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except GatewayError:
            raise
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite ({self._path.name}): {exc}") from exc

    def _connect(self, query_only: bool) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; we say BEGIN IMMEDIATE ourselves.
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout_s, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        # WAL + synchronous=NORMAL: a commit is in the WAL file before it returns, so it survives
        # the process being killed (SIGKILL, OOM); only an OS crash or power loss can lose the
        # last commits, which is the durability the gateway promises. FULL would fsync on every
        # commit for no gain against process crashes.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        if query_only:
            conn.execute("PRAGMA query_only = ON")
        self._conn = conn

    def _disconnect(self) -> None:
        assert self._conn is not None
        self._conn.close()
        self._conn = None

    def _call(self, bound: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise StoreError(f"sqlite ({self._path.name}) is closed")
        return bound(self._conn)


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes SQLite's write lock up front.

    A deferred transaction that reads and then writes can fail with SQLITE_BUSY when another
    process wrote in between; IMMEDIATE waits (busy_timeout) for the lock instead, which is what
    makes claim's select-then-update atomic across processes.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction: several SELECTs see one state even while other processes write."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")
