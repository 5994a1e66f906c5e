"""The gateway's exception tree; library and driver errors are translated into it at the boundary.

GatewayError
├── SettingsError          a setting is missing or invalid (start-up stops, naming it)
├── HitError               a collection hit is refused
│   └── PayloadTooLarge    body over the size limit
├── AdminError             a Management API request is refused
│   ├── Invalid            a value is refused, naming its field
│   ├── NotFound           the thing named does not exist
│   └── Conflict           it clashes with what is stored
├── QueueFull              the queue is at its bound (retry after a while)
└── StoreError             a backend (SQLite, Redis, PostgreSQL) failed

Errors carry a machine-readable `code`, never an HTTP status: each surface (collect/app.py,
admin/api.py) maps codes and kinds to its own answers.
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

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PayloadTooLarge(HitError):
    def __init__(self, limit: int) -> None:
        super().__init__("payload_too_large", f"body is larger than {limit} bytes")


class AdminError(GatewayError):
    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class Invalid(AdminError):
    """A body or query value that is refused, naming the field by its path."""


class NotFound(AdminError):
    def __init__(self, what: str, ident: str) -> None:
        super().__init__("not_found", f"{what} {ident!r} does not exist")


class Conflict(AdminError):
    """The request clashes with what is stored (an id already taken)."""


class QueueFull(GatewayError):
    def __init__(self, retry_after_s: int = 5) -> None:
        super().__init__("the queue is full")
        self.retry_after_s = retry_after_s


class StoreError(GatewayError):
    """A storage backend failed; the message never contains event data."""
