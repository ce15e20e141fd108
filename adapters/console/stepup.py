"""Security-key step-up in the console (rule option ``step_up: webauthn``, SPEC §5).

Console users register security keys or passkeys (WebAuthn, ``py_webauthn``); approving a
request whose rule has ``step_up: webauthn`` then needs a fresh assertion whose challenge is
``SHA-256(bytes.fromhex(call_sha256) ‖ nonce)``: bound to exactly the call the grant will bind,
with a one-time random nonce held server-side per session and request (so an assertion for
another request, a replay, or a stale page fails). The verified assertion becomes the
``approver.step_up`` record of the attestation, so the approval carries the approver's own
signature, which anyone can check offline with the public key recorded next to it
(``examples/verify_offline.py`` does).

The relying party is ``server.public_url``: its host is the RP ID, its origin the expected
origin. Verification failures raise ``StepUpError`` (a ``NotAuthorized``).

``py_webauthn`` and what it brings (pyasn1, cbor2, pyOpenSSL: ~7 MB of a server's memory)
load with the first ceremony, not at start: most deployments never run one.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from bot.accounts import Passkey, Passkeys
from bot.domain import Request
from bot.errors import NotAuthorized

#: how long a registration or approval challenge stays usable
CHALLENGE_TTL = 300.0


class StepUpError(NotAuthorized):
    """A WebAuthn registration or assertion that does not verify."""


def challenge_for(call_sha256: str, nonce: bytes) -> bytes:
    """The assertion challenge for a call: SHA-256 of its ``call_sha256`` bytes and a nonce."""
    return hashlib.sha256(bytes.fromhex(call_sha256) + nonce).digest()


@dataclass
class StepUp:
    """Registration and assertion ceremonies for one console (one relying party)."""

    passkeys: Passkeys
    public_url: str
    _pending: dict[tuple[str, str], tuple[bytes, float]] = field(default_factory=dict)

    @property
    def rp_id(self) -> str:
        return urlsplit(self.public_url).hostname or "localhost"

    @property
    def origin(self) -> str:
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}"

    def _remember(self, session: str, purpose: str, value: bytes) -> None:
        now = time.monotonic()
        for key in [k for k, (_, at) in self._pending.items() if now - at > CHALLENGE_TTL]:
            del self._pending[key]
        self._pending[(session, purpose)] = (value, now)

    def _take(self, session: str, purpose: str) -> bytes:
        """The pending value, once (a second use finds nothing). Raises ``StepUpError``."""
        found = self._pending.pop((session, purpose), None)
        if found is None or time.monotonic() - found[1] > CHALLENGE_TTL:
            raise StepUpError("no security-key challenge is pending here; try again")
        return found[0]

    async def registration_options(self, session: str, user: str) -> str:
        import webauthn
        from webauthn.helpers.structs import (
            AuthenticatorSelectionCriteria,
            PublicKeyCredentialDescriptor,
            ResidentKeyRequirement,
            UserVerificationRequirement,
        )

        challenge = secrets.token_bytes(32)
        self._remember(session, "register", challenge)
        existing = await self.passkeys.passkeys_of(user)
        options = webauthn.generate_registration_options(
            rp_id=self.rp_id,
            rp_name="signoff",
            user_name=user,
            user_id=hashlib.sha256(user.encode()).digest()[:16],
            challenge=challenge,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(k.credential_id))
                for k in existing
            ],
        )
        return webauthn.options_to_json(options)

    async def register(self, session: str, user: str, credential: str, label: str) -> Passkey:
        """Verify a new credential and store it. Raises ``StepUpError`` / ``Conflict``."""
        import webauthn
        from webauthn.helpers import bytes_to_base64url
        from webauthn.helpers.exceptions import InvalidRegistrationResponse

        challenge = self._take(session, "register")
        try:
            verified = webauthn.verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
            )
        except (InvalidRegistrationResponse, ValueError, KeyError, TypeError) as exc:
            raise StepUpError(f"the security key's registration does not verify: {exc}") from None
        key = Passkey(
            credential_id=bytes_to_base64url(verified.credential_id),
            user=user,
            public_key=bytes_to_base64url(verified.credential_public_key),
            sign_count=verified.sign_count,
            label=label[:100],
            created_at=datetime.now(UTC),
        )
        await self.passkeys.add_passkey(key)
        return key

    async def assertion_options(self, session: str, user: str, request: Request) -> str:
        import webauthn
        from webauthn.helpers.structs import (
            PublicKeyCredentialDescriptor,
            UserVerificationRequirement,
        )

        keys = await self.passkeys.passkeys_of(user)
        if not keys:
            raise StepUpError("register a security key first (Security keys, in the menu)")
        nonce = secrets.token_bytes(16)
        self._remember(session, f"assert:{request.id}", nonce)
        options = webauthn.generate_authentication_options(
            rp_id=self.rp_id,
            challenge=challenge_for(request.current_call_sha256, nonce),
            allow_credentials=[
                PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(k.credential_id))
                for k in keys
            ],
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        return webauthn.options_to_json(options)

    async def verify(
        self, session: str, user: str, request: Request, assertion: str
    ) -> dict[str, Any]:
        """The attestation's ``step_up`` record for a verified assertion by one of ``user``'s
        keys over ``request``'s current call. Raises ``StepUpError``."""
        import webauthn
        from webauthn.helpers import bytes_to_base64url
        from webauthn.helpers.exceptions import InvalidAuthenticationResponse

        nonce = self._take(session, f"assert:{request.id}")
        try:
            data = json.loads(assertion)
            credential_id = str(data["id"])
            response = data["response"]
        except (ValueError, KeyError, TypeError):
            raise StepUpError("the security-key answer is not a WebAuthn assertion") from None
        key = await self.passkeys.passkey(credential_id)
        if key is None or key.user != user:
            raise StepUpError("this security key is not registered to you")
        try:
            verified = webauthn.verify_authentication_response(
                credential=assertion,
                expected_challenge=challenge_for(request.current_call_sha256, nonce),
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
                credential_public_key=webauthn.base64url_to_bytes(key.public_key),
                credential_current_sign_count=key.sign_count,
            )
        except (InvalidAuthenticationResponse, ValueError, KeyError, TypeError) as exc:
            raise StepUpError(f"the security key's signature does not verify: {exc}") from None
        await self.passkeys.set_sign_count(key.credential_id, verified.new_sign_count)
        return {
            "type": "webauthn",
            "credential_id": key.credential_id,
            "public_key": key.public_key,
            "rp_id": self.rp_id,
            "origin": self.origin,
            "call_sha256": request.current_call_sha256,
            "nonce": bytes_to_base64url(nonce),
            "authenticator_data": str(response["authenticatorData"]),
            "client_data_json": str(response["clientDataJSON"]),
            "signature": str(response["signature"]),
        }
