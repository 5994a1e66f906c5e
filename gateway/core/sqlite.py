"""SQLite plumbing shared by the embedded queue, hit log, ledger and configuration store.

sqlite3 blocks (disk I/O, waiting for another process's lock), so each connection lives on a
thread of its own and the event loop awaits its results.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from gateway.core.errors import GatewayError, StoreError
from gateway.core.logs import ThrottledLog

try:
    import fcntl
except ImportError:  # not on Windows: writers then wait in SQLite's busy handler only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# What a connection's thread is asked to do: call `fn(*args)`, resolve `future` on `loop`.
_Job = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]", asyncio.AbstractEventLoop]
# What it answers: the future, and (True, result) or (False, exception).
_Done = tuple["asyncio.Future[Any]", bool, Any]


# Data files hold tokens (sealed), hashed PII and delivery records: the gateway's user only.
PRIVATE_FILE_MODE = 0o600


class ThreadConnection:
    """A sqlite3 connection that lives on one dedicated thread; the event loop awaits results.

    sqlite3 calls block (disk I/O, waiting for another process's lock), so none runs on the
    loop. A single thread also serialises this connection's use without locks.

    The hand-off is as cheap as it can be made: the loop puts a job on a `queue.SimpleQueue`
    (no lock, condition or work item of an executor) and the thread answers through one
    `call_soon_threadsafe` for every run of answers the loop has not collected yet, so a busy
    loop is woken once for many results rather than once for each.
    """

    def __init__(
        self,
        path: Path,
        name: str,
        busy_timeout_s: float = 10.0,
        *,
        niceness: int = 0,
        autocheckpoint: bool = True,
    ) -> None:
        self._path = path
        self._name = name
        self._niceness = niceness
        self._busy_timeout_s = busy_timeout_s
        # False: this connection's commits never checkpoint the WAL (a `Checkpointer` does).
        self._autocheckpoint = autocheckpoint
        # Jobs this connection's thread has run: a `Checkpointer` reads it to tell whether
        # anything may have been written since its last round (an int the GIL keeps whole).
        self.jobs_run = 0
        self._conn: _Connection | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Answers the thread has made and the loop has not collected; deque appends and pops
        # are atomic, so the two sides share it without a lock.
        self._done: collections.deque[_Done] = collections.deque()
        # True while a collection is scheduled on the loop (the thread then adds to `_done`
        # only). A stale read can only cost an extra, empty collection.
        self._scheduled = False

    async def open(self, query_only: bool = False) -> None:
        await self._submit(self._connect, query_only)

    async def run(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(connection, ...)` on the connection's thread.

        sqlite3 errors become `StoreError` here, the one boundary with the driver; the gateway's
        own errors (QueueFull, Conflict, ...) raised inside `fn` pass through unchanged.
        """
        if kwargs:
            return await self._submit(self._call_kw, fn, args, kwargs)
        return await self._submit(self._call, fn, *args)

    async def close(self) -> None:
        if self._conn is not None:
            await self._submit(self._disconnect)
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            # Joining blocks (briefly: the thread has nothing left to do), so it happens off
            # the loop.
            await asyncio.to_thread(thread.join)

    async def _submit(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, args, future, loop))
        try:
            return await future
        except GatewayError:
            raise
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite ({self._path.name}): {exc}") from exc

    # -- on the connection's thread ----------------------------------------------------------

    def _serve(self) -> None:
        if self._niceness:
            _lower_priority(self._niceness)
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, args, future, loop = job
            if future.done():  # the caller was cancelled before the job started: skip it
                continue
            try:
                done: _Done = (future, True, fn(*args))
            except BaseException as exc:  # handed to the awaiting caller, whatever it is
                done = (future, False, exc)
            self.jobs_run += 1
            self._done.append(done)
            if not self._scheduled:
                self._scheduled = True
                try:
                    loop.call_soon_threadsafe(self._collect)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    self._scheduled = False
                    self._done.clear()

    # -- back on the loop --------------------------------------------------------------------

    def _collect(self) -> None:
        # Cleared before draining: an answer added after the drain schedules a new collection.
        self._scheduled = False
        done = self._done
        while done:
            future, ok, value = done.popleft()
            if future.done():  # cancelled while the job ran
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _connect(self, query_only: bool) -> None:
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created 0600 before SQLite opens it: SQLite gives the -wal, -shm and -journal files
        # the database file's own mode, so none of them is ever readable by others either.
        os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE))
        # isolation_level=None: no implicit transactions; we say BEGIN IMMEDIATE ourselves.
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout_s,
            isolation_level=None,
            factory=_Connection,
        )
        if not query_only and fcntl is not None:
            conn.write_lock_fd = os.open(
                self._path.with_name(self._path.name + "-writers.lock"),
                os.O_RDWR | os.O_CREAT,
                PRIVATE_FILE_MODE,
            )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        # WAL + synchronous=NORMAL: a commit is in the WAL file before it returns, so it survives
        # the process being killed (SIGKILL, OOM); only an OS crash or power loss can lose the
        # last commits, which is the durability the gateway promises. FULL would fsync on every
        # commit for no gain against process crashes.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        if not self._autocheckpoint:
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        if query_only:
            conn.execute("PRAGMA query_only = ON")
        self._conn = conn

    def _disconnect(self) -> None:
        assert self._conn is not None
        if self._conn.write_lock_fd is not None:
            os.close(self._conn.write_lock_fd)
        self._conn.close()
        self._conn = None

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._conn is None:
            raise StoreError(f"sqlite ({self._path.name}) is closed")
        return fn(self._conn, *args)

    def _call_kw(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        if self._conn is None:
            raise StoreError(f"sqlite ({self._path.name}) is closed")
        return fn(self._conn, *args, **kwargs)


# How often a `Checkpointer` copies what was committed into the database file (when anything
# was), and the WAL size (in pages) at which it has the writer's thread restart the WAL. That
# round holds the writer for two fsyncs (5-10 ms on the bench's disk): 64 MB of WAL make it
# one every few seconds at full load rather than one a second.
CHECKPOINT_EVERY_S = 0.25
RESTART_WAL_PAGES = 16384


class Checkpointer:
    """Copies a WAL file's commits into the database on a thread of its own, off the commits.

    SQLite's automatic checkpoint runs inside the commit that fills the WAL past 1000 pages: it
    fsyncs the WAL, copies the pages and fsyncs the database, all on the committing thread, so
    every append waiting behind that commit waited 10-20 ms (the collect role's p99 at 25% load
    was those commits). Here the writer's connection has `autocheckpoint=False` and this one
    runs PASSIVE checkpoints every `every_s` while the writer works: they take no lock writers
    wait for, and sqlite3 releases the GIL while they copy and sync.

    A WAL only starts over from its beginning when a write begins with all of it copied, which
    a stream of appends landing during each checkpoint can postpone for ever. So once the WAL
    holds `restart_pages`, one round runs on the writer's own thread: no append of this process
    can land between it and the next one, which then restarts the WAL. That round copies what
    came in since the last (little) and bounds the file at about `restart_pages` plus what one
    round's time lets the appends write.
    """

    def __init__(
        self,
        writer: ThreadConnection,
        path: Path,
        name: str,
        *,
        every_s: float = CHECKPOINT_EVERY_S,
        restart_pages: int = RESTART_WAL_PAGES,
    ) -> None:
        self._writer = writer
        self._name = name
        self._conn = ThreadConnection(path, name, autocheckpoint=False)
        self._every_s = every_s
        self._restart_pages = restart_pages
        self._task: asyncio.Task[None] | None = None
        self._failures = ThrottledLog(log)

    async def open(self) -> None:
        await self._conn.open()
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._conn.close()

    async def _run(self) -> None:
        seen = -1
        while True:
            await asyncio.sleep(self._every_s)
            if self._writer.jobs_run == seen:
                continue  # nothing written since the last round
            seen = self._writer.jobs_run
            try:
                await self.checkpoint()
            except Exception as exc:  # the next round tries again: this task must never end,
                # or nothing would checkpoint the WAL any more
                self._failures.warning("checkpoint", f"WAL checkpoint failed: {exc!r}")

    async def checkpoint(self) -> None:
        """One round: copy what the WAL holds; past `restart_pages`, again on the writer."""
        wal_pages = await self._conn.run(_checkpoint_passive)
        if wal_pages >= self._restart_pages:
            await self._writer.run(_checkpoint_passive)


def _checkpoint_passive(conn: sqlite3.Connection) -> int:
    """Copy the WAL's pages that no reader still needs; return the WAL's size in pages."""
    # (busy, pages in the WAL, pages copied); -1s when the file is not in WAL mode.
    _, wal_pages, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(wal_pages)


def _lower_priority(niceness: int) -> None:
    """Make the calling thread yield the CPU to the others (Linux: niceness is per thread)."""
    with contextlib.suppress(AttributeError, OSError):  # no setpriority, or not permitted
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


class _Connection(sqlite3.Connection):
    # The file every writing connection of a database locks while it writes (see `immediate`).
    write_lock_fd: int | None = None


@contextlib.contextmanager
def _writers_in_turn(conn: sqlite3.Connection) -> Iterator[None]:
    """Queue for the write lock in the kernel rather than in SQLite's busy handler.

    A process that finds the database locked sleeps in SQLite's busy handler for 1, 2, 5, 10 ms
    and more between tries, and misses the moment the lock is free; with several gateway
    processes on one file that sleeping, not the work, bounded their throughput. A `flock` on a
    file beside the database wakes the next writer as soon as the last one is done.
    """
    fd = getattr(conn, "write_lock_fd", None)
    if fd is None or fcntl is None:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # a file system without locks (some network mounts): SQLite's lock suffices
        yield
        return
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes SQLite's write lock up front.

    A deferred transaction that reads and then writes can fail with SQLITE_BUSY when another
    process wrote in between; IMMEDIATE waits (busy_timeout) for the lock instead, which is what
    makes claim's select-then-update atomic across processes.
    """
    with _writers_in_turn(conn):
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


def split_script(script: str) -> list[str]:
    """A schema's statements one by one, for running inside our own transaction
    (`executescript` would commit it)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements
