"""The gateway's exception tree; library and driver errors are translated into it at the boundary.

GatewayError
├── SettingsError          a setting is missing or invalid (start-up stops, naming it)
├── HitError               a collection hit is refused (-> 4xx JSON error)
│   └── PayloadTooLarge    body over the size limit (-> 413)
├── AdminError             a Management API request is refused (-> 4xx JSON error)
│   ├── NotFound           (-> 404)
│   └── Conflict           (-> 409)
├── QueueFull              the queue is at its bound (-> 503 with Retry-After)
└── StoreError             a backend (SQLite, Redis, PostgreSQL) failed
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class SettingsError(GatewayError):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.name = name
        self.problem = problem


class HitError(GatewayError):
    """A hit the collection endpoint refuses; `code` is machine-readable, `message` for people."""

    status = 400

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status


class PayloadTooLarge(HitError):
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__("payload_too_large", f"body is larger than {limit} bytes")


class AdminError(GatewayError):
    status = 400

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class NotFound(AdminError):
    status = 404

    def __init__(self, what: str, ident: str) -> None:
        super().__init__("not_found", f"{what} {ident!r} does not exist")


class Conflict(AdminError):
    status = 409


class QueueFull(GatewayError):
    def __init__(self, retry_after_s: int = 5) -> None:
        super().__init__("the queue is full")
        self.retry_after_s = retry_after_s


class StoreError(GatewayError):
    """A storage backend failed; the message never contains event data."""
