"""Per-minute figures of the requests the delivery worker sent: how many, how many events they
carried (batch size) and how long the destination took to answer (latency).

The worker knows both per request; the ledger keeps events, not requests. So each process keeps
its own last day of minutes in memory (a dict of small lists, at most 1,440 minutes per
integration): noting a request is a dict update on the event loop, no I/O. After a restart the
figures start again; with several delivering processes each shows its own.
"""

from __future__ import annotations

from dataclasses import dataclass

KEPT_S = 24 * 3600  # what the timeline's longest window needs
MINUTE_S = 60


@dataclass(slots=True)
class Minute:
    requests: int = 0
    events: int = 0
    latency_s: float = 0.0  # the sum over the minute's requests
    latency_max_s: float = 0.0
    events_max: int = 0


@dataclass(frozen=True, slots=True)
class RequestFigures:
    """The requests of one time bucket (several minutes for a day's chart)."""

    requests: int
    events: int
    batch_max: int
    latency_avg_s: float | None
    latency_max_s: float | None


class RequestStats:
    def __init__(self) -> None:
        self._minutes: dict[str, dict[int, Minute]] = {}

    def note(self, integration_id: str, at: float, events: int, latency_s: float) -> None:
        minutes = self._minutes.setdefault(integration_id, {})
        key = int(at // MINUTE_S)
        minute = minutes.get(key)
        if minute is None:
            minute = minutes[key] = Minute()
            self._forget_before(minutes, key - KEPT_S // MINUTE_S)
        minute.requests += 1
        minute.events += events
        minute.latency_s += latency_s
        minute.latency_max_s = max(minute.latency_max_s, latency_s)
        minute.events_max = max(minute.events_max, events)

    @staticmethod
    def _forget_before(minutes: dict[int, Minute], oldest: int) -> None:
        # Runs once per new minute; the dict holds at most a day of minutes, so this is small.
        for key in [k for k in minutes if k < oldest]:
            del minutes[key]

    def buckets(
        self, integration_id: str, since: float, bucket_s: int, count: int
    ) -> list[RequestFigures]:
        """`count` buckets of `bucket_s` seconds from `since` (a multiple of a minute)."""
        totals = [Minute() for _ in range(count)]
        for key, minute in self._minutes.get(integration_id, {}).items():
            index = int((key * MINUTE_S - since) // bucket_s)
            if 0 <= index < count:
                total = totals[index]
                total.requests += minute.requests
                total.events += minute.events
                total.latency_s += minute.latency_s
                total.latency_max_s = max(total.latency_max_s, minute.latency_max_s)
                total.events_max = max(total.events_max, minute.events_max)
        return [
            RequestFigures(
                requests=t.requests,
                events=t.events,
                batch_max=t.events_max,
                latency_avg_s=t.latency_s / t.requests if t.requests else None,
                latency_max_s=t.latency_max_s if t.requests else None,
            )
            for t in totals
        ]

    def drop(self, integration_id: str) -> None:
        self._minutes.pop(integration_id, None)
