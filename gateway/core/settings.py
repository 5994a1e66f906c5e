"""Settings: read once from a mapping (the environment over a TOML file), cast and validated here.

Only the CLI reads the environment; everything else receives a frozen `Settings`.
A bad value stops start-up with a `SettingsError` that names the variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.core.errors import SettingsError

DEFAULT_TIKTOK_API_URL = "https://business-api.tiktok.com/open_api/v1.3/event/track/"
TIKTOK_MAX_EVENTS_PER_REQUEST = 1000

T = TypeVar("T")
N = TypeVar("N", int, float)


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Networks(tuple[Network, ...]):
    """The trusted proxies' networks, hashed once.

    Collection's address caches (`collect/visitor.py`) take them as part of their key on every
    request, and an `ip_network` hashes itself in Python: a plain tuple of them cost a few
    microseconds per hit in hashing alone.
    """

    _hash: int

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            self._hash = tuple.__hash__(self)
            return self._hash


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "0.0.0.0"
    # None: the same address as `host`.
    admin_host: str | None = None
    collect_port: int = 8080
    admin_port: int = 8084
    data_dir: Path = Path("./data")
    database_url: str | None = None
    queue_url: str | None = None
    admin_tokens: tuple[Secret, ...] = ()
    secret_keys: tuple[Secret, ...] = ()
    tiktok_api_url: str = DEFAULT_TIKTOK_API_URL
    # The collection endpoint's public address for snippets; None: the request's own host.
    public_url: str | None = None
    trusted_proxies: tuple[Network, ...] = field(
        default_factory=lambda: Networks(
            (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
        )
    )
    # The one header believed from a trusted proxy for the visitor's address.
    client_ip_header: str = "X-Forwarded-For"
    # Slow or idle clients: how long a connection may take to send a request head, may let a
    # body stall, and may sit idle between requests; and how many may be open at once.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    keepalive_timeout_s: float = 75.0
    max_connections: int = 10_000
    batch_max_events: int = 500
    batch_max_wait_ms: int = 1000
    queue_max_events: int = 5_000_000
    queue_max_bytes: int = 2 * 2**30
    log_format: str = "json"
    # Not in the contract's table, but operators need them; all have safe defaults.
    # Segment's and RudderStack's server libraries fill batches up to 500 KB: take them whole.
    max_body_bytes: int = 512 * 1024
    max_batch_hits: int = 100
    event_max_age_days: int = 7
    tiktok_timeout_s: float = 10.0
    shutdown_timeout_s: float = 10.0
    log_level: str = "INFO"
    # The event debugger's per-event records (ledger.db): kept this long, and at most this many.
    ledger_retention_hours: int = 72
    ledger_max_events: int = 500_000

    @classmethod
    def from_sources(cls, environ: Mapping[str, str], config_file: Path | None = None) -> Settings:
        """Build settings from a TOML file (optional) overlaid by the environment."""
        values: dict[str, Any] = {}
        if config_file is not None:
            values.update(_read_toml(config_file))
        for key, value in environ.items():
            if key.startswith(_PREFIX):
                values[key] = value
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        unknown = sorted(
            k
            for k in values
            if k.startswith(_PREFIX) and k not in _KNOWN and not k.startswith(_IGNORED_PREFIXES)
        )
        if unknown:
            raise SettingsError(unknown[0], "is not a known setting")

        def get(name: str, cast: Callable[[str, Any], T], default: T) -> T:
            raw = values.get(name)
            if raw is None or raw == "":
                return default
            return cast(name, raw)

        batch_max_events = get("GATEWAY_BATCH_MAX_EVENTS", _int_between(1, 1000), 500)
        settings = cls(
            host=get("GATEWAY_HOST", _text, "0.0.0.0"),
            admin_host=get("GATEWAY_ADMIN_HOST", _text, None),
            collect_port=get("GATEWAY_COLLECT_PORT", _int_between(0, 65535), 8080),
            admin_port=get("GATEWAY_ADMIN_PORT", _int_between(0, 65535), 8084),
            data_dir=Path(get("GATEWAY_DATA_DIR", _text, "./data")),
            database_url=get(
                "GATEWAY_DATABASE_URL", _url(("sqlite", "postgresql", "postgres")), None
            ),
            queue_url=get("GATEWAY_QUEUE_URL", _url(("sqlite", "redis", "rediss")), None),
            public_url=get("GATEWAY_PUBLIC_URL", _public_url, None),
            admin_tokens=get("GATEWAY_ADMIN_TOKEN", _secret_list(min_length=16), ()),
            secret_keys=get("GATEWAY_SECRET_KEY", _secret_list(min_length=32), ()),
            tiktok_api_url=get(
                "GATEWAY_TIKTOK_API_URL", _url(("http", "https")), DEFAULT_TIKTOK_API_URL
            ),
            trusted_proxies=get("GATEWAY_TRUSTED_PROXIES", _networks, cls().trusted_proxies),
            client_ip_header=get("GATEWAY_CLIENT_IP_HEADER", _header_name, "X-Forwarded-For"),
            header_timeout_s=get("GATEWAY_HEADER_TIMEOUT_S", _float_between(0.1, 600.0), 10.0),
            body_timeout_s=get("GATEWAY_BODY_TIMEOUT_S", _float_between(0.1, 600.0), 10.0),
            keepalive_timeout_s=get(
                "GATEWAY_KEEPALIVE_TIMEOUT_S", _float_between(0.1, 3600.0), 75.0
            ),
            max_connections=get("GATEWAY_MAX_CONNECTIONS", _int_between(1, 10**6), 10_000),
            batch_max_events=batch_max_events,
            batch_max_wait_ms=get("GATEWAY_BATCH_MAX_WAIT_MS", _int_between(1, 600_000), 1000),
            queue_max_events=get("GATEWAY_QUEUE_MAX_EVENTS", _int_between(1, 10**10), 5_000_000),
            queue_max_bytes=get("GATEWAY_QUEUE_MAX_BYTES", _int_between(2**16, 2**50), 2 * 2**30),
            log_format=get("GATEWAY_LOG_FORMAT", _choice("console", "json"), _default_log_format()),
            max_body_bytes=get(
                "GATEWAY_MAX_BODY_BYTES", _int_between(1024, 16 * 1024 * 1024), 512 * 1024
            ),
            max_batch_hits=get("GATEWAY_MAX_BATCH_HITS", _int_between(1, 10_000), 100),
            event_max_age_days=get("GATEWAY_EVENT_MAX_AGE_DAYS", _int_between(1, 7), 7),
            tiktok_timeout_s=get("GATEWAY_TIKTOK_TIMEOUT_S", _float_between(0.1, 120.0), 10.0),
            shutdown_timeout_s=get("GATEWAY_SHUTDOWN_TIMEOUT_S", _float_between(0.1, 600.0), 10.0),
            log_level=get(
                "GATEWAY_LOG_LEVEL", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"
            ),
            ledger_retention_hours=get(
                "GATEWAY_LEDGER_RETENTION_HOURS", _int_between(1, 24 * 366), 72
            ),
            ledger_max_events=get("GATEWAY_LEDGER_MAX_EVENTS", _int_between(1, 10**9), 500_000),
        )
        return settings

    @property
    def collect_url(self) -> str:
        return f"http://{_display_host(self.host)}:{self.collect_port}"

    @property
    def admin_bind_host(self) -> str:
        return self.host if self.admin_host is None else self.admin_host

    @property
    def admin_url(self) -> str:
        return f"http://{_display_host(self.admin_bind_host)}:{self.admin_port}"


_PREFIX = "GATEWAY_"
# Variables the test suite and tooling read; they are not gateway settings.
_IGNORED_PREFIXES = ("GATEWAY_TEST_", "GATEWAY_BENCH_")
_KNOWN = frozenset(
    {
        "GATEWAY_HOST",
        "GATEWAY_ADMIN_HOST",
        "GATEWAY_CLIENT_IP_HEADER",
        "GATEWAY_HEADER_TIMEOUT_S",
        "GATEWAY_BODY_TIMEOUT_S",
        "GATEWAY_KEEPALIVE_TIMEOUT_S",
        "GATEWAY_MAX_CONNECTIONS",
        "GATEWAY_COLLECT_PORT",
        "GATEWAY_ADMIN_PORT",
        "GATEWAY_DATA_DIR",
        "GATEWAY_DATABASE_URL",
        "GATEWAY_QUEUE_URL",
        "GATEWAY_ADMIN_TOKEN",
        "GATEWAY_SECRET_KEY",
        "GATEWAY_TIKTOK_API_URL",
        "GATEWAY_PUBLIC_URL",
        "GATEWAY_TRUSTED_PROXIES",
        "GATEWAY_BATCH_MAX_EVENTS",
        "GATEWAY_BATCH_MAX_WAIT_MS",
        "GATEWAY_QUEUE_MAX_EVENTS",
        "GATEWAY_QUEUE_MAX_BYTES",
        "GATEWAY_LOG_FORMAT",
        "GATEWAY_MAX_BODY_BYTES",
        "GATEWAY_MAX_BATCH_HITS",
        "GATEWAY_EVENT_MAX_AGE_DAYS",
        "GATEWAY_TIKTOK_TIMEOUT_S",
        "GATEWAY_SHUTDOWN_TIMEOUT_S",
        "GATEWAY_LOG_LEVEL",
        "GATEWAY_LEDGER_RETENTION_HOURS",
        "GATEWAY_LEDGER_MAX_EVENTS",
    }
)


def _read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file whose keys are the variables' names, with or without the prefix.

    `collect_port = 8080` and `GATEWAY_COLLECT_PORT = 8080` mean the same.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError("--config", f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError("--config", f"{path} is not valid TOML: {exc}") from exc
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key.upper()
        if not name.startswith(_PREFIX):
            name = _PREFIX + name
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        out[name] = value
    return out


def _default_log_format() -> str:
    return "console" if os.isatty(2) else "json"


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _text(name: str, raw: Any) -> str:
    if not isinstance(raw, str | int):
        raise SettingsError(name, "must be a string")
    return str(raw).strip()


# RFC 9110's token characters: what a header's name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _header_name(name: str, raw: Any) -> str:
    value = str(raw).strip()
    if not _HEADER_NAME.fullmatch(value):
        raise SettingsError(name, f"must be an HTTP header name such as X-Real-IP, got {value!r}")
    return value


def _between(kind: Callable[[str], N], low: N, high: N) -> Callable[[str, Any], N]:
    """A cast to `kind` (int or float) that refuses values outside [low, high]."""
    what = "a whole number" if kind is int else "a number"

    def cast(name: str, raw: Any) -> N:
        try:
            value = kind(str(raw).strip())
        except ValueError:
            raise SettingsError(name, f"must be {what}, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(name, f"must be between {low} and {high}, got {value}")
        return value

    return cast


def _int_between(low: int, high: int) -> Callable[[str, Any], int]:
    return _between(int, low, high)


def _float_between(low: float, high: float) -> Callable[[str, Any], float]:
    return _between(float, low, high)


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def cast(name: str, raw: Any) -> str:
        value = str(raw).strip()
        for option in allowed:
            if value.lower() == option.lower():
                return option
        raise SettingsError(name, f"must be one of {', '.join(allowed)}, got {value!r}")

    return cast


def _url(schemes: tuple[str, ...]) -> Callable[[str, Any], str]:
    def cast(name: str, raw: Any) -> str:
        value = str(raw).strip()
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.lower() not in schemes or not rest:
            raise SettingsError(
                name, f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}"
            )
        return value

    return cast


def _public_url(name: str, raw: Any) -> str:
    """An http(s) origin, perhaps with a path prefix; kept without its trailing slash, since
    snippets append `/df.js` to it."""
    url = _url(("http", "https"))(name, raw)
    parsed = urllib.parse.urlsplit(url)
    if not parsed.hostname or parsed.query or parsed.fragment:
        raise SettingsError(name, "must be an http(s) address such as https://collect.shop.example")
    return url.rstrip("/")


def _secret_list(min_length: int) -> Callable[[str, Any], tuple[Secret, ...]]:
    def cast(name: str, raw: Any) -> tuple[Secret, ...]:
        parts = [p.strip() for p in str(raw).split(",") if p.strip()]
        if not parts:
            raise SettingsError(name, "is empty")
        for part in parts:
            if len(part) < min_length:
                # Never echo the value itself: it is a secret.
                raise SettingsError(name, f"each value must be at least {min_length} characters")
        return tuple(Secret(p) for p in parts)

    return cast


def _networks(name: str, raw: Any) -> tuple[Network, ...]:
    networks: list[Network] = []
    for part in str(raw).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise SettingsError(name, f"{part!r} is not a CIDR such as 10.0.0.0/8") from None
    return Networks(networks)
