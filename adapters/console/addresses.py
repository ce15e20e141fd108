"""The address a console request comes from, for the login throttle's per-address key.

Behind a reverse proxy every request's TCP peer is the proxy, and counting failures per
peer would let one person's failed logins lock everyone out. When the peer is one of
``server.trusted_proxies``, the address is taken from ``X-Forwarded-For`` instead: the
rightmost hop that is not itself a trusted proxy, since each proxy appends the address it
saw and everything to the left of the last trusted append came from the client, who can
write anything there. From any other peer the header is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.settings import Network


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: ``peer``, or the hop of ``forwarded_for`` described in the
    module docstring when ``peer`` is a trusted proxy."""
    if peer is None:
        return "unknown"
    if not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)
