"""The Management API's bodies: parsing and validation of what comes in, shapes of what goes out.

Pure functions on parsed JSON values (no aiohttp, no I/O), so they are tested with tables. A
refused value raises `Invalid` (422) naming the field by its path (`config.pixel_code`,
`allowed_origins[1]`); a body that is not JSON raises `AdminError` (400).

Values are written onto the domain dataclasses with `dataclasses.replace`, so a create starts
from the dataclass defaults and a PATCH from the stored record: one validator per field serves both.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import phonenumbers

from gateway import destinations
from gateway.core.errors import AdminError, Invalid
from gateway.core.models import (
    ConsentDefault,
    DeadLetter,
    EventSource,
    Integration,
    IntegrationStats,
    QueueUsage,
    Source,
)
from gateway.core.validation import (
    Validator,
    boolean,
    bounded_text,
    expect,
    nullable,
    parse_object,
    require,
)

MAX_DEAD_LETTER_PAGE = 1000
MAX_SELECTED_IDS = 10_000

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Unauthorized(AdminError):
    def __init__(self, message: str) -> None:
        super().__init__("unauthorized", message)


# ---------------------------------------------------------------------------- parsing helpers


def parse_json(body: bytes) -> Any:
    """The body as JSON, or a 400 that says why it is not."""
    if not body.strip():
        raise AdminError("invalid_json", "the request body is empty; a JSON object is expected")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise AdminError("invalid_json", f"the request body is not valid JSON: {detail}") from None
    except RecursionError:
        raise AdminError("invalid_json", "the request body is nested too deeply") from None
    except ValueError:  # an integer past Python's digit limit: no setting needs one
        raise AdminError("invalid_json", "the request body holds a number too long") from None


def _same_or_absent(obj: dict[str, Any], name: str, current: str) -> None:
    """PATCH may repeat an immutable field (a client sending the object back), not change it."""
    if name in obj and obj.pop(name) != current:
        raise Invalid("immutable_field", f"{name} cannot be changed", name)


# ------------------------------------------------------------------------------------- sources


def _host(value: str, path: str) -> str:
    host = value.lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise Invalid("invalid_value", f"{path} is not a valid host name", path) from None
    if not _HOSTNAME.fullmatch(host):  # IPv4 addresses match too
        raise Invalid("invalid_value", f"{path} is not a valid host name", path)
    return host


def _origin(value: Any, path: str) -> str:
    text = expect(value, str, "a string", path).strip()
    message = f"{path} must be an origin such as https://shop.example or http://localhost:3000"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise Invalid("invalid_value", message, path) from None
    scheme = parts.scheme.lower()
    if (
        scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or text.endswith((":", "?", "#"))
    ):
        raise Invalid("invalid_value", message, path)
    ipv6 = ":" in parts.hostname
    host = f"[{parts.hostname.lower()}]" if ipv6 else _host(parts.hostname, path)
    # Browsers send Origin without a default port; normalise so CORS matching is exact.
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _origins(value: Any, path: str) -> tuple[str, ...]:
    items = expect(value, list, "a list of origins", path)
    if len(items) > 100:
        raise Invalid("invalid_value", f"{path} holds at most 100 origins", path)
    return tuple(dict.fromkeys(_origin(item, f"{path}[{i}]") for i, item in enumerate(items)))


def _cookie_domain(value: Any, path: str) -> str:
    text = expect(value, str, "a string", path).strip().removeprefix(".")
    return _host(text, path)


def _consent_default(value: Any, path: str) -> ConsentDefault:
    text = expect(value, str, '"deny" or "grant"', path)
    try:
        return ConsentDefault(text)
    except ValueError:
        raise Invalid("invalid_value", f'{path} must be "deny" or "grant"', path) from None


_EVENT_SOURCES = ", ".join(f'"{kind.value}"' for kind in EventSource)
_EVENT_SOURCE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _event_source(value: Any, path: str) -> EventSource:
    text = expect(value, str, f"one of {_EVENT_SOURCES}", path)
    try:
        return EventSource(text)
    except ValueError:
        raise Invalid("invalid_value", f"{path} must be one of {_EVENT_SOURCES}", path) from None


def _event_source_id(value: Any, path: str) -> str:
    text = expect(value, str, "a string", path).strip()
    if not _EVENT_SOURCE_ID.fullmatch(text):
        raise Invalid("invalid_value", f"{path} must match ^[A-Za-z0-9_-]{{1,64}}$", path)
    return text


_STORE_APP_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")


def _app_id(value: Any, path: str) -> str:
    text = expect(value, str, "a string", path).strip()
    if not _STORE_APP_ID.fullmatch(text):
        raise Invalid(
            "invalid_value",
            f"{path} must be the app's store id (e.g. 343200656 or com.example.shop)",
            path,
        )
    return text


def _check_event_source(source: Source) -> Source:
    """Only a web source may fall back to the pixel code: TikTok files app, offline and CRM
    events under an app id or an event set id, and refuses a pixel code there. App events also
    name the app itself, by its store id."""
    kind = source.event_source.value
    if source.event_source is not EventSource.WEB and source.event_source_id is None:
        raise Invalid(
            "required",
            f'event_source_id is required when event_source is "{kind}" '
            "(the TikTok app id or event set id)",
            "event_source_id",
        )
    if source.event_source is EventSource.APP and source.app_id is None:
        raise Invalid(
            "required", 'app_id is required when event_source is "app" (its store id)', "app_id"
        )
    return source


def _region(value: Any, path: str) -> str:
    region = expect(value, str, "a region code such as US", path).strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise Invalid("invalid_value", f"{path} is not a known region code (e.g. US, DE)", path)
    return region


def _source_id(value: Any, path: str) -> str:
    text = expect(value, str, "a string", path)
    if not _ID.fullmatch(text):
        raise Invalid("invalid_value", f"{path} must match ^[A-Za-z0-9_-]{{1,64}}$", path)
    return text


SOURCE_FIELDS: Mapping[str, Validator] = {
    "name": bounded_text(1, 200),
    "allowed_origins": _origins,
    "cookie_domain": nullable(_cookie_domain),
    "consent_default": _consent_default,
    "default_phone_region": nullable(_region),
    "event_source": _event_source,
    "event_source_id": nullable(_event_source_id),
    "app_id": nullable(_app_id),
}


def parse_new_source(data: Any, make_id: Callable[[], str], now: str) -> Source:
    """A source from a create body; the id is generated when the body has none."""
    values = parse_object(data, {"id": _source_id, **SOURCE_FIELDS})
    require(values, ("name",))
    source_id = values.pop("id", None) or make_id()
    return _check_event_source(
        dataclasses.replace(Source(id=source_id, name=""), **values, created_at=now, updated_at=now)
    )


def patch_source(current: Source, data: Any, now: str) -> Source:
    obj = dict(expect(data, dict, "a JSON object", "the body"))
    _same_or_absent(obj, "id", current.id)
    values = parse_object(obj, SOURCE_FIELDS)
    return _check_event_source(dataclasses.replace(current, **values, updated_at=now))


# -------------------------------------------------------------------------------- integrations


def _categories(value: Any, path: str) -> tuple[str, ...]:
    items = expect(value, list, "a list of strings", path)
    if len(items) > 50:
        raise Invalid("invalid_value", f"{path} holds at most 50 categories", path)
    category = bounded_text(1, 64)
    return tuple(dict.fromkeys(category(item, f"{path}[{i}]") for i, item in enumerate(items)))


def _vendor(value: Any, path: str) -> str:
    """One of the registry's vendors."""
    known = destinations.vendors()
    if not isinstance(value, str) or value not in known:
        names = ", ".join(f'"{vendor}"' for vendor in known)
        raise Invalid("unknown_vendor", f"{path} must be one of {names}", path)
    return value


INTEGRATION_FIELDS: Mapping[str, Validator] = {
    "name": bounded_text(1, 200),
    "enabled": boolean,
    "consent_categories": _categories,
}


def parse_new_integration(data: Any, make_id: Callable[[], str], now: str) -> Integration:
    """An integration from a create body. Whether `source_id` exists is the caller's check.

    The `config` is the vendor's: its destination validates it (and names a refused field).
    """
    obj = expect(data, dict, "a JSON object", "the body")
    vendor = _vendor(obj["vendor"], "vendor") if "vendor" in obj else destinations.DEFAULT_VENDOR
    destination = destinations.get(vendor)
    fields = {
        "source_id": _source_id,
        "vendor": _vendor,
        **INTEGRATION_FIELDS,
        "config": destination.parse_config,
    }
    values = parse_object(obj, fields)
    require(values, ("source_id", "name", "config"))
    values["vendor"] = vendor
    config = values.pop("config")
    return dataclasses.replace(
        Integration(id=make_id(), source_id="", name="", config=config),
        **values,
        created_at=now,
        updated_at=now,
    )


def patch_integration(current: Integration, data: Any, now: str) -> Integration:
    """Merge a PATCH body; a `config` that changes anything also resumes a paused integration.

    A secret is kept when `config` has none (or repeats the mask a GET showed).
    """
    obj = dict(expect(data, dict, "a JSON object", "the body"))
    for name in ("id", "source_id", "vendor"):
        _same_or_absent(obj, name, getattr(current, name))
    destination = destinations.get(current.vendor)

    def config(value: Any, path: str) -> Any:
        return destination.patch_config(current.config, value, path)

    values = parse_object(obj, {**INTEGRATION_FIELDS, "config": config})
    new_config = values.pop("config", None)
    if new_config is not None:
        values["config"] = new_config
        # The operator acted on the configuration (new token, fixed pixel): deliver again.
        values["paused_reason"] = None
    return dataclasses.replace(current, **values, updated_at=now)


# ------------------------------------------------------------------ dead-letter selections


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Dead letters by what they are: every given field must match (`since` inclusive and
    `until` exclusive bound when they were dead-lettered, as Unix seconds)."""

    reason: str | None = None
    event_name: str | None = None
    since: float | None = None
    until: float | None = None

    def matches(self, dead_letter: DeadLetter) -> bool:
        at = dead_letter.dead_lettered_at
        return (
            (self.reason is None or dead_letter.reason == self.reason)
            and (self.event_name is None or dead_letter.event_name == self.event_name)
            and (self.since is None or at >= self.since)
            and (self.until is None or at < self.until)
        )


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a replay or purge means: given ids, one event_id, a filter, or all."""

    ids: tuple[str, ...] | None = None
    event_id: str | None = None
    filter: DeadLetterFilter | None = None

    @property
    def everything(self) -> bool:
        return self.ids is None and self.event_id is None and self.filter is None

    def matches(self, dead_letter: DeadLetter) -> bool:
        if self.ids is not None:
            return str(dead_letter.id) in self.ids
        if self.filter is not None:
            return self.filter.matches(dead_letter)
        return self.event_id is None or dead_letter.event_id == self.event_id


def _dead_letter_ids(value: Any, path: str) -> tuple[str, ...]:
    items = expect(value, list, "a list of dead-letter ids", path)
    if len(items) > MAX_SELECTED_IDS:
        raise Invalid("invalid_value", f"{path} holds at most {MAX_SELECTED_IDS} ids", path)
    ids = (
        str(expect(item, (str, int), "a string or an integer", f"{path}[{i}]"))
        for i, item in enumerate(items)
    )
    return tuple(dict.fromkeys(ids))


def _all_true(value: Any, path: str) -> bool:
    if value is not True:
        raise Invalid("invalid_value", f"{path} must be true when given", path)
    return True


def _instant(value: Any, path: str) -> float:
    text = expect(value, str, "an ISO 8601 time such as 2026-01-29T14:30:00Z", path).strip()
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(
            "invalid_value", f"{path} must be an ISO 8601 time such as 2026-01-29T14:30:00Z", path
        ) from None
    if moment.tzinfo is None:  # a time without an offset is taken as UTC, as every time shown is
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


FILTER_FIELDS: Mapping[str, Validator] = {
    "reason": bounded_text(1, 100),
    "event_name": bounded_text(1, 200),
    "since": _instant,
    "until": _instant,
}


def _filter(value: Any, path: str) -> DeadLetterFilter:
    values = parse_object(value, FILTER_FIELDS, path)
    if not values:
        raise Invalid(
            "invalid_value", f"{path} needs at least one of {', '.join(FILTER_FIELDS)}", path
        )
    since, until = values.get("since"), values.get("until")
    if since is not None and until is not None and since >= until:
        raise Invalid("invalid_value", f"{path}.since must be before {path}.until", path)
    return DeadLetterFilter(**values)


SELECTION_FIELDS: Mapping[str, Validator] = {
    "ids": _dead_letter_ids,
    "event_id": bounded_text(1, 200),
    "filter": _filter,
    "all": _all_true,
}


def parse_selection(data: Any) -> Selection:
    """Exactly one of `{"ids": [...]}`, `{"event_id": "..."}`, `{"filter": {...}}`,
    `{"all": true}`."""
    values = parse_object(data, SELECTION_FIELDS)
    if len(values) != 1:
        raise Invalid(
            "invalid_value", 'give exactly one of "ids", "event_id", "filter" or "all": true', None
        )
    return Selection(
        ids=values.get("ids"), event_id=values.get("event_id"), filter=values.get("filter")
    )


@dataclass(frozen=True, slots=True)
class Fix:
    """A fix-then-replay request: the corrections, and whether only to show their result."""

    changes: Mapping[str, Any]
    preview: bool


def _preview(value: Any, path: str) -> bool:
    return bool(expect(value, bool, "true or false", path))


def _changes(value: Any, path: str) -> Mapping[str, Any]:
    # The destination checks each field (it knows what its events hold); here only the shape.
    changes: dict[str, Any] = expect(value, dict, "an object of fields to change", path)
    return changes


FIX_FIELDS: Mapping[str, Validator] = {"changes": _changes, "preview": _preview}


def parse_fix(data: Any) -> Fix:
    """`{"changes": {...}, "preview": true|false}`; without `preview` the fix is sent."""
    values = parse_object(data, FIX_FIELDS)
    require(values, ("changes",))
    return Fix(changes=values["changes"], preview=values.get("preview", False))


def selection_from_query(query: Mapping[str, str], ids: list[str]) -> dict[str, Any]:
    """The JSON-body form of `?ids=1,2&ids=3`, `?event_id=...`, `?all=true` or the filter's
    fields (`?reason=rejected&since=...`)."""
    skip = ("ids", "all", *FILTER_FIELDS)
    data: dict[str, Any] = {k: v for k, v in query.items() if k not in skip}
    if ids:
        data["ids"] = [part for value in ids for part in value.split(",") if part]
    if "all" in query:
        data["all"] = query["all"].lower() in ("true", "1", "yes")
    found = {k: v for k, v in query.items() if k in FILTER_FIELDS}
    if found:
        data["filter"] = found
    return data


def int_param(query: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    """A whole-number query parameter within [low, high], or None when it is absent."""
    raw = query.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise Invalid("invalid_type", f"{name} must be a whole number", name) from None
    if not low <= value <= high:
        raise Invalid("invalid_value", f"{name} must be between {low} and {high}", name)
    return value


def parse_page(query: Mapping[str, str]) -> tuple[int, int]:
    """`limit` (1..1000, default 100) and `offset` (>= 0, default 0) of a listing."""
    limit = int_param(query, "limit", 1, MAX_DEAD_LETTER_PAGE)
    offset = int_param(query, "offset", 0, 2**62)
    return (100 if limit is None else limit, 0 if offset is None else offset)


# ------------------------------------------------------------------------------ response shapes


def iso_utc(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso(now: float) -> str:
    return iso_utc(now) or ""


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def source_json(source: Source, server_key: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": source.id,
        "name": source.name,
        "allowed_origins": list(source.allowed_origins),
        "cookie_domain": source.cookie_domain,
        "consent_default": source.consent_default.value,
        "default_phone_region": source.default_phone_region,
        "event_source": source.event_source.value,
        "event_source_id": source.event_source_id,
        "app_id": source.app_id,
        "created_at": source.created_at or None,
        "updated_at": source.updated_at or None,
    }
    if server_key is not None:
        body["server_key"] = server_key
    return body


def integration_json(
    integration: Integration, stats: IntegrationStats, usage: QueueUsage
) -> dict[str, Any]:
    return {
        "id": integration.id,
        "source_id": integration.source_id,
        "vendor": integration.vendor,
        "name": integration.name,
        "enabled": integration.enabled,
        "consent_categories": list(integration.consent_categories),
        "config": destinations.get(integration.vendor).public_config(integration.config),
        "status": {
            "state": integration.state.value,
            "paused_reason": integration.paused_reason,
            "queued": stats.queued,
            "delivered": stats.delivered,
            "failed": stats.failed,
            "dead_lettered": stats.dead_lettered,
            "last_error": stats.last_error,
            "last_success_at": iso_utc(stats.last_success_at),
            # The queue is shared by every integration: its depth and bounds, for backpressure.
            "queue_depth": usage.depth,
            "queue_bound": usage.bound,
            "queue_bytes": usage.size_bytes,
            "queue_bytes_bound": usage.bytes_bound,
        },
        "created_at": integration.created_at or None,
        "updated_at": integration.updated_at or None,
    }


def dead_letter_json(dead_letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": dead_letter.id,
        "event_id": dead_letter.event_id,
        "event_name": dead_letter.event_name,
        "event_time": dead_letter.event_time,
        "reason": dead_letter.reason,
        "answer": dead_letter.answer,
        "attempts": dead_letter.attempts,
        "first_attempt_at": iso_utc(dead_letter.first_attempt_at),
        "last_attempt_at": iso_utc(dead_letter.last_attempt_at),
        "dead_lettered_at": iso_utc(dead_letter.dead_lettered_at),
    }
