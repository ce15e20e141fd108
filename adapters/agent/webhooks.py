"""Standard Webhooks signatures for signoff callbacks, asymmetric ``v1a`` (Ed25519).

When a request with a ``callback_url`` becomes final, signoff POSTs its JSON there with the
three Standard Webhooks headers (https://www.standardwebhooks.com/, "Signature scheme"):

- ``webhook-id``: unique per event (``<request id>.<status>``), the same on every retry, so
  receivers deduplicate on it;
- ``webhook-timestamp``: integer Unix seconds of this attempt;
- ``webhook-signature``: ``v1a,<base64 Ed25519 signature>`` over
  ``"{webhook-id}.{webhook-timestamp}.{body}"``.

Why ``v1a`` rather than the symmetric ``v1`` HMAC: signoff already publishes Ed25519 keys
at ``/v1/keys`` for grants and attestations, so an agent verifies callbacks with the key set
it already caches -- no per-agent shared secret to provision, rotate or leak, and the server
never holds a secret an agent could use to forge a decision. Key rotation needs nothing
extra: every published key (current and retired) is tried.

``sign`` is used by the server (``adapters.callbacks``); ``verify`` by agents. ``verify``
raises ``WebhookError`` (an ``EvidenceError``) for missing headers, a timestamp outside the
tolerance, or no signature that verifies.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import Any

from bot.errors import EvidenceError
from bot.evidence.keys import PublicKeys
from bot.ports import Signer

VERSION = "v1a"
TOLERANCE = 300  # seconds, as the Standard Webhooks reference libraries use


class WebhookError(EvidenceError):
    """A callback whose Standard Webhooks signature does not verify."""


def signed_content(webhook_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{webhook_id}.{timestamp}.".encode() + body


def sign(signer: Signer, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three ``webhook-*`` headers for ``body``."""
    signature = signer.sign(signed_content(webhook_id, timestamp, body))
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"{VERSION},{base64.b64encode(signature).decode('ascii')}",
    }


def verify(
    body: bytes,
    headers: Mapping[str, str],
    keys: PublicKeys,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE,
) -> Any:
    """Check a callback and return its parsed JSON body. Raises ``WebhookError``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    webhook_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (webhook_id and stamp and signatures):
        raise WebhookError("callback lacks the webhook-id/-timestamp/-signature headers")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookError("webhook-timestamp is not a whole number of seconds") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookError("webhook-timestamp is outside the allowed window (replay?)")
    message = signed_content(webhook_id, timestamp, body)
    for item in signatures.split():
        version, _, encoded = item.partition(",")
        if version != VERSION:
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        for kid in keys:
            try:
                keys.verify(kid, message, signature)
            except EvidenceError:
                continue
            try:
                return json.loads(body)
            except ValueError:
                raise WebhookError("callback body is not JSON") from None
    raise WebhookError("no webhook signature verifies with the published keys")


__all__ = ["TOLERANCE", "VERSION", "WebhookError", "sign", "signed_content", "verify"]
