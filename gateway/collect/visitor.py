"""Who sent a hit: the visitor's IP address and scheme, believing proxies only when trusted.

Pure functions over the peer address and the request headers; no aiohttp import.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence

from gateway.core.settings import Network

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# A hostile client can send thousands of entries; nobody runs that many proxies.
MAX_FORWARDED_HOPS = 32


def parse_ip(text: str) -> IPAddress | None:
    """An address from a header token: tolerates brackets, quotes and ports; None if unreadable."""
    token = text.strip().strip('"')
    if not token or token.lower() == "unknown" or token.startswith("_"):
        return None
    if token.startswith("["):  # "[2001:db8::1]:443"
        token, closed, _ = token[1:].partition("]")
        if not closed:
            return None
    elif token.count(":") == 1:  # "203.0.113.5:443"
        token = token.partition(":")[0]
    try:
        address = ipaddress.ip_address(token)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: IPAddress, trusted: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def _forwarded_for_chain(header_text: str, rfc7239: bool) -> list[str]:
    """The proxy chain, client first: the `for=` values of `Forwarded` (RFC 7239), or the
    comma-separated entries of an `X-Forwarded-For`-style header (one entry for `X-Real-IP`)."""
    elements = header_text.split(",")[-MAX_FORWARDED_HOPS:]
    if not rfc7239:
        return elements
    chain: list[str] = []
    for element in elements:
        for pair in element.split(";"):
            name, _, value = pair.strip().partition("=")
            if name.strip().lower() == "for":
                chain.append(value)
    return chain


def _header_text(headers: Mapping[str, str], name: str) -> str | None:
    """Every occurrence of the header, joined as RFC 9110 says repeated fields combine."""
    getall = getattr(headers, "getall", None)  # a multidict: a proxy may have added a line
    if getall is None:
        return headers.get(name)
    values = getall(name, ())
    return ",".join(values) if values else None


def client_ip(
    peer: str | None,
    headers: Mapping[str, str],
    trusted: tuple[Network, ...],
    header: str = "X-Forwarded-For",
) -> str | None:
    """The visitor's address: the peer's, or, behind trusted proxies, the right-most untrusted
    hop of the one `header` the operator names (GATEWAY_CLIENT_IP_HEADER).

    Every other forwarding header is ignored, so whatever a visitor sends in a header its proxy
    does not overwrite changes nothing. A forged header from an untrusted peer changes nothing
    either. When a trusted proxy's header is unreadable the answer is None: better no IP than
    the proxy's own.
    """
    rfc7239 = header.lower() == "forwarded"
    return _client_ip(peer, _header_text(headers, header), rfc7239, trusted)


# The same few proxies and visitors send hit after hit: parsing addresses is worth remembering.
# Bounded, so a flood of made-up headers only evicts entries.
@functools.lru_cache(maxsize=4096)
def _client_ip(
    peer: str | None, header_text: str | None, rfc7239: bool, trusted: tuple[Network, ...]
) -> str | None:
    peer_address = parse_ip(peer) if peer else None
    if peer_address is None:
        return None
    if not is_trusted(peer_address, trusted):
        return str(peer_address)
    if header_text is None:
        return str(peer_address)
    chain = _forwarded_for_chain(header_text, rfc7239)
    for hop in reversed(chain):
        address = parse_ip(hop)
        if address is None:
            return None
        if not is_trusted(address, trusted):
            return str(address)
    # Every hop is a trusted proxy: the left-most one is the client.
    first = parse_ip(chain[0]) if chain else None
    return str(first) if first is not None else None


@functools.lru_cache(maxsize=1024)
def _peer_is_trusted(peer: str | None, trusted: tuple[Network, ...]) -> bool:
    peer_address = parse_ip(peer) if peer else None
    return peer_address is not None and is_trusted(peer_address, trusted)


def is_https(
    scheme: str,
    peer: str | None,
    headers: Mapping[str, str],
    trusted: tuple[Network, ...],
    header: str = "X-Forwarded-For",
) -> bool:
    """Whether the visitor's original request was HTTPS (so cookies get `Secure`).

    From a trusted proxy: the `proto=` of `Forwarded` when that is the believed header, else
    `X-Forwarded-Proto`.
    """
    if scheme == "https":
        return True
    if not _peer_is_trusted(peer, trusted):
        return False
    if header.lower() != "forwarded":
        proto = headers.get("X-Forwarded-Proto") or ""
        return proto.split(",")[0].strip().lower() == "https"
    forwarded = headers.get("Forwarded")
    if forwarded:
        for pair in forwarded.split(",")[0].split(";"):
            name, _, value = pair.strip().partition("=")
            if name.strip().lower() == "proto":
                return value.strip().strip('"').lower() == "https"
    return False
