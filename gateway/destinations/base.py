"""The Destination interface: what delivery, the Management API, the UI and the OpenAPI document
use of a destination, whatever it is.

A destination is a folder under `gateway/destinations/` with one class implementing
`Destination`, and one line in the registry (`gateway/destinations/__init__.py`). Nothing else
in the gateway names a destination: collection asks it to transform a hit, the config stores to
seal and open its config, the Management API to validate and mask it, delivery to send a batch
and to classify the answer.
"""

from __future__ import annotations

import abc
import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import aiohttp
import msgspec

from gateway.core.crypto import SecretBox
from gateway.core.errors import Invalid
from gateway.core.hit import Hit
from gateway.core.identity import Identity
from gateway.core.models import DestinationConfig, Integration, Source
from gateway.core.settings import Settings


class Verdict(enum.StrEnum):
    """What an answer means for the events that were in the request."""

    ACCEPTED = "accepted"  # remove from the queue
    THROTTLED = "throttled"  # retry later, and slow down
    RETRY = "retry"  # destination- or network-side fault: retry with backoff
    PAUSE = "pause"  # credentials or permission: pause the integration, keep its events
    REJECT_CONTENT = "reject_content"  # some event is bad: isolate it, dead-letter it
    TOO_LARGE = "too_large"  # split the batch and resend


@dataclass(frozen=True, slots=True)
class Answer:
    """A destination's answer to one request, as delivery, the ledger and the API see it."""

    http_status: int | None
    code: int | None  # the destination's own result code, when it has one
    message: str
    request_id: str | None
    retry_after_s: float | None
    transport_error: str | None

    def describe(self) -> str:
        """A short text for a queue's `last_error` or a dead letter's answer."""
        if self.transport_error is not None:
            return f"transport error: {self.transport_error}"
        if self.code is not None:
            return f"{self.code}: {self.message}" if self.message else str(self.code)
        if self.message:
            return f"HTTP {self.http_status}: {self.message}"
        return f"HTTP {self.http_status}"


# An answer's message and a transport error are one short line: they are stored with every
# event of the request and shown in the debugger.
MAX_MESSAGE_CHARS = 300


def one_line(text: str) -> str:
    """`text` with its whitespace runs as single spaces, at most MAX_MESSAGE_CHARS long."""
    return " ".join(text.split())[:MAX_MESSAGE_CHARS]


def describe_transport_error(exc: BaseException) -> str:
    """A network fault as an answer's `transport_error`: the exception's class and text, which
    name the host and the OS error (no request header, so no secret, is part of them)."""
    detail = str(exc).strip()
    name = type(exc).__name__
    return one_line(f"{name}: {detail}" if detail else name)


class HitContext(msgspec.Struct, frozen=True, gc=False):
    """What the collection stage resolved about a hit from the request and the cookies.

    A frozen msgspec struct, not a dataclass: one is built per hit at collection and per record
    at delivery, and a struct's `__init__` runs in C. Strings and an Identity only: no cycles.
    """

    event_id: str  # the hit's message_id, else generated once per hit ("evt_" + hex)
    event_time: int  # Unix seconds
    anonymous_id: str | None = None
    ttp: str | None = None
    ttclid: str | None = None  # from the page URL (or a trusted referrer), else the ttclid cookie
    ip: str | None = None
    user_agent: str | None = None
    locale: str | None = None
    identity: Identity = msgspec.field(default_factory=Identity)  # the identity cookie's hashes


@dataclass(frozen=True, slots=True)
class Transformed:
    event_name: str
    event: dict[str, Any]  # one event as the destination takes it (stored as JSON)


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event that must not be sent (and is dead-lettered with `reason`)."""

    event_name: str
    reason: str
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PauseHint:
    """Why a destination paused an integration, in words an operator can act on."""

    message: str  # what went wrong and what to do ("TikTok rejected the access token: ...")
    field: str | None  # the config field that fixes it ("config.access_token"), if one does
    # True when resuming without changing that field is expected to pause again at once.
    resume_fails: bool = True


FieldKind = Literal["text", "secret", "url", "number", "integer", "boolean", "mapping"]


@dataclass(frozen=True, slots=True)
class FormField:
    """One field of a destination's config, as the UI's form renders it."""

    name: str
    label: str
    kind: FieldKind = "text"
    required: bool = False
    hint: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "kind": self.kind,
            "required": self.required,
            "hint": self.hint,
        }


class Client(Protocol):
    """A destination's sender, bound to the process's HTTP session."""

    async def send(
        self,
        integration: Integration,
        source: Source | None,
        payloads: Sequence[bytes],
        *,
        test_event_code: str | None = None,
    ) -> Answer:
        """One request with these events (each payload one stored event, already JSON)."""
        ...


class Destination(abc.ABC):
    """Everything the gateway needs to know of one kind of destination."""

    vendor: ClassVar[str]  # the `vendor` of its integrations
    label: ClassVar[str]  # for people (the UI's vendor list)
    description: ClassVar[str]
    form: ClassVar[tuple[FormField, ...]]  # the UI's form for the config
    # The config's JSON Schemas for the OpenAPI document, under `<schema_name>Config…`: as the
    # API shows it ("shown"), as a create body takes it ("create") and as a PATCH does ("patch").
    schema_name: ClassVar[str]
    # The key of the list of events in a request body (`request_body`'s, and TikTok's `data`).
    body_events_key: ClassVar[str] = "events"
    config_schemas: ClassVar[Mapping[str, Mapping[str, Any]]]

    # --- configuration (the Management API and the stores) ---

    @abc.abstractmethod
    def parse_config(self, data: Any, path: str) -> DestinationConfig:
        """A new integration's config from its JSON; `Invalid` (4xx) names the field."""

    @abc.abstractmethod
    def patch_config(
        self, current: DestinationConfig, data: Any, path: str
    ) -> DestinationConfig | None:
        """`current` updated by a PATCH's `config`; a secret left out (or repeated as the mask
        a GET showed) is kept. None when the PATCH names nothing to change."""

    @abc.abstractmethod
    def public_config(self, config: DestinationConfig) -> dict[str, Any]:
        """The config as the API shows it: secrets masked."""

    @abc.abstractmethod
    def seal_config(self, box: SecretBox, config: DestinationConfig) -> str:
        """The config as the stores write it: JSON with every secret sealed."""

    @abc.abstractmethod
    def open_config(
        self, box: SecretBox, raw: str | bytes, integration_id: str
    ) -> DestinationConfig:
        """The stored config read back (`StoreError` when a secret cannot be opened)."""

    # --- the event path ---

    def sendable(self, hit: Hit, integration: Integration) -> Hit | None:
        """The hit this destination makes an event of, or None when it sends nothing for it.

        `page` and `track` hits are sent; the calls a protocol only records (Segment's alias,
        group and screen) are not, unless a destination says otherwise.
        """
        del integration  # a destination that maps more calls reads its config here
        return hit if hit.type in ("page", "track") else None

    @abc.abstractmethod
    def transform(
        self, hit: Hit, context: HitContext, integration: Integration, source: Source
    ) -> Transformed | Rejected:
        """The destination's event for a `page` or `track` hit (pure: no I/O)."""

    def check_event(
        self, payload: bytes, integration: Integration, source: Source | None
    ) -> str | None:
        """Why a stored event (a dead letter's payload) may not be sent as it is, or None.

        Replay asks before it sends a dead letter again, with collection's rules, so what was
        set aside for a missing field stays set aside. A destination with no such rules sends."""
        del payload, integration, source
        return None

    def fix_event(self, payload: bytes, changes: Any, path: str) -> tuple[str, bytes]:
        """(event name, payload) of a stored event with an operator's corrections applied;
        `Invalid` names the refused field. The event's id is kept."""
        del payload, changes
        raise Invalid("not_supported", "this destination's events cannot be corrected", path)

    @abc.abstractmethod
    def client(self, session: aiohttp.ClientSession, settings: Settings) -> Client:
        """The sender, on the process's shared HTTP session."""

    @abc.abstractmethod
    def classify(self, answer: Answer) -> Verdict:
        """What an answer means for the events of the request."""

    @abc.abstractmethod
    def sample_event(self, integration: Integration, now: float) -> bytes:
        """One harmless event for the Management API's `…/test` send."""

    @property
    def has_test_mode(self) -> bool:
        """Whether its test sends can be kept out of production data with a test event code
        (a config field of that name): the Management API then refuses a test send without one."""
        return any(f.name == "test_event_code" for f in self.form)

    def request_body(
        self,
        integration: Integration,
        source: Source | None,
        payloads: Sequence[bytes],
        *,
        test_event_code: str | None = None,
    ) -> Any:
        """The JSON body `Client.send` posts for these payloads, for people to read (a test
        send shows it). Never a secret: those travel in headers."""
        del integration, source, test_event_code
        return {"events": [json.loads(p) for p in payloads]}

    def request_bytes(
        self, integration: Integration, source: Source | None, payloads: Sequence[bytes]
    ) -> bytes:
        """`request_body` as the bytes posted, for the debugger to keep: a destination that
        builds its body by concatenation says so here, without parsing it back."""
        return json.dumps(self.request_body(integration, source, payloads)).encode()

    def events_in_body(self, body: bytes) -> list[dict[str, Any]]:
        """The events of a body `request_bytes` made, in order: the debugger shows each event
        of a stored request at its place in it. Nothing for a body it cannot read."""
        try:
            parsed = json.loads(body)
        except ValueError:
            return []
        events = parsed.get(self.body_events_key) if isinstance(parsed, dict) else None
        return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []

    def explain_pause(self, reason: str | None) -> PauseHint | None:
        """What a pause reason this destination's answers gave means, or None when it has
        nothing to add (a pause by an admin, a reason it does not know)."""
        del reason
        return None

    def describe(self) -> dict[str, Any]:
        """The destination as the Management API lists it (the UI builds its form from it)."""
        return {
            "vendor": self.vendor,
            "label": self.label,
            "description": self.description,
            "form": [f.as_json() for f in self.form],
        }
