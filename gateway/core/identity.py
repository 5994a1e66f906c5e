"""What is known about a visitor to match on: hashes only, destination-neutral.

Collection learns it (identify, a hit's traits) and keeps it in the sealed identity cookie;
destinations read it when they build their events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from gateway.core.hashing import (
    hash_city,
    hash_country,
    hash_email,
    hash_external_id,
    hash_name,
    hash_phone,
    hash_state,
    hash_zip_code,
)
from gateway.core.hit import MAX_TRAIT_VALUES, Address, Hit, Traits

# Values of one kind the identity remembers (emails, phones): TikTok takes arrays, the cookie
# must stay small (a browser keeps at most 4 KB of it).
MAX_IDENTITY_VALUES = MAX_TRAIT_VALUES


def _merged(newer: tuple[str, ...], older: tuple[str, ...]) -> tuple[str, ...]:
    """Newer values first, each once, at most MAX_IDENTITY_VALUES."""
    return tuple(dict.fromkeys(newer + older))[:MAX_IDENTITY_VALUES]


class Identity(msgspec.Struct, frozen=True, gc=False):
    """What is known about a visitor to match on, hashed only (lowercase hex SHA-256).

    Learned from identify and kept in the sealed identity cookie; a hit's own traits build one
    too. Nothing raw is held: the user id is its external_id hash.

    A frozen msgspec struct rather than a dataclass: delivery builds and compares several per
    record, and a struct's `__init__` and `==` run in C (a frozen dataclass sets each field
    through `object.__setattr__`). It holds only strings, so the GC need not track it.
    """

    user_id_hash: str | None = None
    email_hashes: tuple[str, ...] = ()
    phone_hashes: tuple[str, ...] = ()
    first_name: str | None = None
    last_name: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None
    zip_code: str | None = None

    def merged_with(self, newer: Identity) -> Identity:
        """This identity updated by what `newer` knows (identify adds, never erases)."""
        return Identity(
            user_id_hash=newer.user_id_hash or self.user_id_hash,
            email_hashes=_merged(newer.email_hashes, self.email_hashes),
            phone_hashes=_merged(newer.phone_hashes, self.phone_hashes),
            **{name: getattr(newer, name) or getattr(self, name) for name in ADDRESS_KEYS},
        )

    def filled_from(self, fallback: Identity) -> Identity:
        """This identity, each missing key taken from `fallback` (a hit's traits over the
        cookie: what the hit says of the person wins, key by key)."""
        if self.empty:  # most hits carry no traits of their own: nothing to merge
            return fallback
        return Identity(
            user_id_hash=self.user_id_hash or fallback.user_id_hash,
            email_hashes=self.email_hashes or fallback.email_hashes,
            phone_hashes=self.phone_hashes or fallback.phone_hashes,
            **{name: getattr(self, name) or getattr(fallback, name) for name in ADDRESS_KEYS},
        )

    @property
    def empty(self) -> bool:
        return self == _NOBODY


# The single-valued keys beside the user id, in TikTok's names (`user.first_name`, ...).
ADDRESS_KEYS = ("first_name", "last_name", "city", "state", "country", "zip_code")
_NOBODY = Identity()


def hit_traits(hit: Hit) -> list[Traits]:
    """The hit's own traits, `context.traits` first; the identity cookie comes after them."""
    candidates = [hit.context.traits if hit.context else None, hit.traits]
    return [traits for traits in candidates if traits is not None]


def hit_identity(hit: Hit, default_region: str | None) -> Identity:
    """The hashed match keys a hit's own traits carry (its `user_id` stays with external_id)."""
    traits = hit_traits(hit)
    if not traits:  # the common case, spared building an identity out of nothing
        return _NOBODY
    return traits_identity(traits, default_region)


def traits_identity(
    candidates: list[Traits], default_region: str | None, user_id: str | None = None
) -> Identity:
    """Hash what traits say of a person; key by key, the first traits that have it win.

    Raw values are hashed here and go no further: the identity cookie and the queued event
    only ever see what this returns.
    """

    def first(hashes: Iterable[str | None]) -> str | None:
        return next((value for value in hashes if value is not None), None)

    addresses = [t.address for t in candidates if t.address is not None]
    return Identity(
        user_id_hash=hash_external_id(user_id),
        email_hashes=first_values(candidates, "email", hash_email),
        phone_hashes=first_values(candidates, "phone", lambda raw: hash_phone(raw, default_region)),
        first_name=first(hash_name(t.first_name or t.firstName) for t in candidates),
        last_name=first(hash_name(t.last_name or t.lastName) for t in candidates),
        city=first(hash_city(a.city) for a in addresses),
        state=first(hash_state(a.state) for a in addresses),
        country=first(hash_country(a.country) for a in addresses),
        zip_code=first(hash_zip_code(postal_code(a)) for a in addresses),
    )


def first_values(
    candidates: list[Traits], name: str, hash_one: Callable[[str], str | None]
) -> tuple[str, ...]:
    """The usable hashes of the first traits whose `name` (a string or a list) yields any."""
    for traits in candidates:
        raw: str | list[str] | None = getattr(traits, name)
        values = [raw] if isinstance(raw, str) else raw or []
        hashes = tuple(dict.fromkeys(h for h in map(hash_one, values) if h is not None))
        if hashes:
            return hashes
    return ()


def postal_code(address: Address) -> str | None:
    return address.postal_code or address.postalCode
