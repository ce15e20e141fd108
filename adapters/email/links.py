"""One-time decision links for the email channel: signed, bound, expiring.

A link token is ``base64url(payload) "." base64url(signature)``: the payload is canonical
JSON ``{"r": request id, "p": person key, "a": address, "v": verdict, "s": arguments_sha256
shown, "e": expiry (Unix seconds, the request's deadline), "k": signing key id}``, signed with
the server's Ed25519 key (the same key ring as attestations, so a link cannot be forged without
it). A link is bound to one person, one request, one verdict and the version of the arguments
the message showed. "One-time" follows from the gate: a person votes once per version, so a
used (or replayed) link is refused as "already voted", and a decided request refuses all.

``read_link`` raises ``LinkError`` (a ``NotAuthorized``) for anything forged, tampered,
expired or malformed; it never returns an unchecked value.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.domain import Verdict
from bot.errors import EvidenceError, NotAuthorized
from bot.evidence.canonical import canonical
from bot.evidence.keys import PublicKeys
from bot.ports import Signer


class LinkError(NotAuthorized):
    """A decision link that is forged, tampered with, expired or not signoff's."""


@dataclass(frozen=True, slots=True)
class Link:
    request_id: str
    person: str
    address: str
    verdict: Verdict
    arguments_sha256: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_link(link: Link, keys: Signer) -> str:
    """The signed token for ``link``."""
    payload = canonical(
        {
            "r": link.request_id,
            "p": link.person,
            "a": link.address,
            "v": link.verdict.value,
            "s": link.arguments_sha256,
            "e": link.expires,
            "k": keys.kid,
        }
    )
    return f"{_b64(payload)}.{_b64(keys.sign(payload))}"


def read_link(token: str, keys: PublicKeys, now: datetime) -> Link:
    """The verified link in ``token``. Raises ``LinkError``."""
    try:
        head, _, tail = token.strip().partition(".")
        payload, signature = _unb64(head), _unb64(tail)
        data = json.loads(payload)
        kid = data["k"]
        keys.verify(kid, payload, signature)
        link = Link(
            request_id=str(data["r"]),
            person=str(data["p"]),
            address=str(data["a"]),
            verdict=Verdict(data["v"]),
            arguments_sha256=str(data["s"]),
            expires=int(data["e"]),
        )
    except EvidenceError:
        raise LinkError(
            "this link's signature does not verify: it was not sent by signoff"
        ) from None
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise LinkError("this is not a signoff decision link") from None
    if now.astimezone(UTC).timestamp() >= link.expires:
        raise LinkError("this link has expired (the request's deadline passed)")
    return link
