"""Logging: JSON lines in production, readable lines on a terminal, and a redaction filter.

The filter runs on every record, after formatting its arguments, so neither a token nor raw PII
can reach a log line by accident: registered secrets, bearer tokens, e-mail addresses and
phone-like digit runs are masked.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_BEARER = re.compile(r"(?i)(bearer\s+|access-token[\"':=\s]+)[^\s\"',;]+")
# International numbers, North-American "(555) 123-4567", and bare runs of 10-15 digits;
# not dates or durations, which have short digit groups.
_PHONE = re.compile(r"\+\(?\d[\d\s().-]{6,}\d|\(\d{3}\)\s?\d{3}[\s.-]?\d{4}|\b\d{10,15}\b")
MASK = "[redacted]"


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def add_secrets(self, secrets: Iterable[str]) -> None:
        self._secrets.extend(s for s in secrets if s)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
        text = _EMAIL.sub(MASK, text)
        return _PHONE.sub(MASK, text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks quote exception messages; format and scrub them now.
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class ThrottledLog:
    """Warnings a client can cause at will: at most one line per kind per interval.

    The lines skipped in between are counted and the next line says how many; what they were
    about is in a metric, which costs nothing per occurrence. Never a traceback.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warning(self, kind: str, message: str) -> None:
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval_s:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return
        self._last[kind] = now
        skipped = self._skipped.pop(kind, 0)
        if skipped:
            message += f"; {skipped} more like it since the last such line"
        self._logger.warning("%s: %s", kind, message)


REDACTION = RedactingFilter()


def configure_logging(fmt: str, level: str, secrets: Iterable[str] = ()) -> None:
    REDACTION.add_secrets(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(REDACTION)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The access log costs time on every hit and records visitors' addresses: off.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
