"""The hit log: one interface (`base.HitLog`), one module per backend, `open_log` to choose."""

from gateway.log.base import HitLog, LogEntry, LogRecord

__all__ = ["HitLog", "LogEntry", "LogRecord"]
