"""Which network destinations the server may call on an agent's behalf (SPEC §6
``callback_url``): https to public addresses only, unless ``callbacks.allow_private_networks``.

Owns the address rule, shared by the submit-time check (a URL naming a literal address) and
the connect-time check after DNS (``adapters.callbacks``). An address is public when it is
globally routable (``ipaddress``'s IANA special-purpose registries) and not multicast, after
unwrapping the IPv6 forms that carry an IPv4 address (IPv4-mapped ``::ffff:0:0/96``, NAT64
``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo): ``[::ffff:127.0.0.1]`` is loopback. Standard
library only.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from bot.errors import RequestError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOCAL_NAMES = ("localhost", "localhost.", "localhost.localdomain")


class PrivateAddress(RequestError):
    """A destination that is not a public address."""

    slug = "private-address"


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def check_public(address: str | IPAddress) -> None:
    """Raises ``PrivateAddress`` unless ``address`` is a public unicast address."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise PrivateAddress(f"{ip} is a scoped (link-local) address")
    inner = embedded_ipv4(ip)
    for candidate in (ip, inner) if inner is not None else (ip,):
        if not candidate.is_global or candidate.is_multicast:
            raise PrivateAddress(f"{ip} is not a public address")


def check_callback_url(url: str, *, allow_private: bool) -> None:
    """The submit-time rule: https, and a literal host must be public (names are checked
    when the connection is made). Raises ``PrivateAddress`` (a 400)."""
    if allow_private:
        return
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError as exc:
        raise PrivateAddress(
            "callback_url is not a valid URL", details=[f"callback_url: {exc}"]
        ) from None
    if parts.scheme != "https":
        raise PrivateAddress(
            "callback_url must be https",
            details=["callback_url: must be https (callbacks.allow_private_networks is off)"],
        )
    host = (parts.hostname or "").rstrip(".") if parts.hostname != "." else ""
    if not host or host.casefold() in _LOCAL_NAMES or host.casefold().endswith(".localhost"):
        raise PrivateAddress(
            "callback_url must name a public host",
            details=[f"callback_url: {parts.hostname!r} is not a public host"],
        )
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: resolved and checked at connect time
    try:
        check_public(ip)
    except PrivateAddress as exc:
        raise PrivateAddress(
            "callback_url must be a public address",
            details=[f"callback_url: {exc.message} (callbacks.allow_private_networks is off)"],
        ) from None


__all__ = ["PrivateAddress", "check_callback_url", "check_public", "embedded_ipv4"]
