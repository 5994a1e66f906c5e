"""The requests collection refused (4xx, 5xx), kept in memory for the debugger.

A refused hit stores nothing, so without this an operator cannot see that a page sends to an
unknown source or a malformed body. Each process keeps its own last `MAX_REFUSED` refusals in
a deque (appending is the whole cost on the request path: no I/O, nothing waits), and loses
them when it stops. What is kept (made by `collect.refusals`) is a summary the gateway wrote
itself: the path, the answer, the source id and the hits' types and event names; never a body,
a trait, an address or a key.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_REFUSED = 1000


@dataclass(frozen=True, slots=True)
class Refusal:
    at: float
    source_id: str | None
    method: str
    path: str
    status: int
    code: str
    message: str
    summary: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "source_id": self.source_id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "summary": self.summary,
        }


class RefusedHits:
    """A bounded ring of the latest refusals, newest last."""

    def __init__(self, size: int = MAX_REFUSED) -> None:
        self._ring: deque[Refusal] = deque(maxlen=size)
        self.total = 0  # refusals ever noted by this process (the ring keeps the latest)

    @property
    def capacity(self) -> int:
        return self._ring.maxlen or 0

    def note(self, refusal: Refusal) -> None:
        self._ring.append(refusal)
        self.total += 1

    def recent(self, source_id: str | None = None, limit: int = 100) -> list[Refusal]:
        """The newest first, of one source when given."""
        found: list[Refusal] = []
        for refusal in reversed(self._ring):
            if source_id is None or refusal.source_id == source_id:
                found.append(refusal)
                if len(found) >= limit:
                    break
        return found

    def __iter__(self) -> Iterator[Refusal]:
        return iter(tuple(self._ring))
