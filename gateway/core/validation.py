"""Validation of parsed JSON values for the Management API and the destinations' configs.

Each validator takes a value and its path in the body (`config.pixel_code`, `allowed_origins[1]`)
and returns the clean value or raises `Invalid` naming that path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from gateway.core.errors import Invalid
from gateway.core.settings import Secret

T = TypeVar("T")
Validator = Callable[[Any, str], Any]

MASK = "****"


def join_path(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def expect(value: Any, kind: type[T] | tuple[type, ...], what: str, path: str) -> T:
    # bool is an int in Python, never in JSON.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise Invalid("invalid_type", f"{path} must be {what}", path)
    return value  # type: ignore[return-value]  # narrowed by the isinstance above


def bounded_text(low: int, high: int) -> Validator:
    def check(value: Any, path: str) -> str:
        text = expect(value, str, "a string", path).strip()
        if not low <= len(text) <= high:
            raise Invalid("invalid_value", f"{path} must be {low} to {high} characters", path)
        return text

    return check


def nullable(inner: Validator) -> Validator:
    """null clears an optional field."""

    def check(value: Any, path: str) -> Any:
        return None if value is None else inner(value, path)

    return check


def boolean(value: Any, path: str) -> bool:
    return expect(value, bool, "true or false", path)


def parse_object(data: Any, fields: Mapping[str, Validator], path: str = "") -> dict[str, Any]:
    """Validate the known fields present in `data`; an unknown key is refused by name."""
    obj: dict[str, Any] = expect(data, dict, "a JSON object", path or "the body")
    unknown = sorted(k for k in obj if k not in fields)
    if unknown:
        field = join_path(path, unknown[0])
        raise Invalid("unknown_field", f"unknown field {field!r}", field)
    return {name: fields[name](value, join_path(path, name)) for name, value in obj.items()}


def require(values: Mapping[str, Any], names: tuple[str, ...], path: str = "") -> None:
    for name in names:
        if name not in values:
            field = join_path(path, name)
            raise Invalid("required", f"{field} is required", field)


def rate(value: Any, path: str) -> float:
    number = float(expect(value, (int, float), "a number", path))
    if not (math.isfinite(number) and 0 < number <= 10_000):
        raise Invalid("invalid_value", f"{path} must be above 0 and at most 10000", path)
    return number


def burst(value: Any, path: str) -> int:
    number = expect(value, int, "a whole number", path)
    if not 1 <= number <= 100_000:
        raise Invalid("invalid_value", f"{path} must be between 1 and 100000", path)
    return number


def mask_secret(token: Secret) -> str:
    """At most the last four characters, and none of a token too short to spare them."""
    value = token.reveal()
    return MASK + value[-4:] if len(value) >= 12 else MASK
