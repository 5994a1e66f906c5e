"""What is known about a visitor to match on: hashes only, destination-neutral.

Collection learns it (identify, a hit's traits) and keeps it in the sealed identity cookie;
destinations read it when they build their events.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.hit import MAX_TRAIT_VALUES

# Values of one kind the identity remembers (emails, phones): TikTok takes arrays, the cookie
# must stay small (a browser keeps at most 4 KB of it).
MAX_IDENTITY_VALUES = MAX_TRAIT_VALUES


def _merged(newer: tuple[str, ...], older: tuple[str, ...]) -> tuple[str, ...]:
    """Newer values first, each once, at most MAX_IDENTITY_VALUES."""
    return tuple(dict.fromkeys(newer + older))[:MAX_IDENTITY_VALUES]


@dataclass(frozen=True, slots=True)
class Identity:
    """What is known about a visitor to match on, hashed only (lowercase hex SHA-256).

    Learned from identify and kept in the sealed identity cookie; a hit's own traits build one
    too. Nothing raw is held: the user id is its external_id hash.
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
