"""The hit log: one interface (`base.HitLog`), one module per backend, `open_log` to choose."""

from __future__ import annotations

from pathlib import Path

from gateway.log.base import HitLog, LogEntry, LogRecord

__all__ = ["HitLog", "LogEntry", "LogRecord", "open_log"]

DEFAULT_FILE_NAME = "hitlog.db"


def open_log(
    url: str | None,
    *,
    data_dir: Path,
    max_records: int,
    max_bytes: int | None,
    retention_s: float,
) -> HitLog:
    """The hit log a URL names, not opened yet: `sqlite://<file>` or no URL for the embedded
    log (`hitlog.db` in the data dir when no file is named), `redis://` / `rediss://` (with an
    optional `?prefix=`) for the shared one. Any other scheme is a ValueError."""
    if url is None or url.startswith("sqlite://"):
        from gateway.log.sqlite import SQLiteHitLog

        named = url.removeprefix("sqlite://") if url else ""
        path = Path(named) if named else data_dir / DEFAULT_FILE_NAME
        return SQLiteHitLog(
            path, max_records=max_records, max_bytes=max_bytes, retention_s=retention_s
        )
    if url.startswith(("redis://", "rediss://")):
        from gateway.log.redis import RedisHitLog  # imported only when configured

        return RedisHitLog(
            url, max_records=max_records, max_bytes=max_bytes, retention_s=retention_s
        )
    scheme = url.partition(":")[0]
    raise ValueError(f"the hit log cannot be stored with {scheme!r}: use sqlite or redis")
