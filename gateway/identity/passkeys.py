"""Passkeys (WebAuthn) as an account's second factor, beside TOTP, through py_webauthn.

A passkey stands in for the authenticator app's code: the password still comes
first (its login secret opens the account), the passkey proves the device. The
relying party is the portal's host name; browsers refuse an IP address there,
so passkeys need a portal URL with a name (docs/accounts.md).

Nothing is stored between the options and the answer: the challenge travels in
a token that an HMAC binds to its purpose, the account (for registration) and
the time, and that expires after ``CHALLENGE_MINUTES``. Sign-in asks for a
discoverable credential without listing the account's, so the options say
nothing about which addresses have passkeys.
"""

from __future__ import annotations

import hmac
import json
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import parse_authentication_credential_json
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidJSONStructure,
    InvalidRegistrationResponse,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from gateway.envelope.keys import b64url, b64url_decode

CHALLENGE_MINUTES = 5
_LABEL = b"sealgate passkey challenge\x00"


class PasskeyError(Exception):
    """A passkey answer that does not verify; the message names no secret."""


@dataclass(frozen=True)
class Credential:
    """What is kept of a registered passkey (account_factors, kind "passkey")."""

    credential_id: bytes
    public_key: bytes  # COSE
    sign_count: int

    def stored(self) -> bytes:
        return json.dumps(
            {"id": b64url(self.credential_id), "key": b64url(self.public_key)}
        ).encode()

    @classmethod
    def from_stored(cls, secret: bytes, sign_count: int | None) -> Credential:
        data = json.loads(secret)
        return cls(b64url_decode(data["id"]), b64url_decode(data["key"]), sign_count or 0)


class Passkeys:
    def __init__(self, key: bytes, rp_id: str, rp_name: str, origin: str) -> None:
        self._key = key
        self.rp_id = rp_id
        self.rp_name = rp_name
        self.origin = origin

    # registration (signed in)

    def registration(self, address: str, existing: list[bytes], now: datetime) -> tuple[str, str]:
        """The browser's creation options (JSON) and the token that carries their challenge."""
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name=self.rp_name,
            user_name=address,
            user_display_name=address,
            exclude_credentials=[PublicKeyCredentialDescriptor(id=c) for c in existing],
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
        )
        return options_to_json(options), self._token("register", address, options.challenge, now)

    def register(self, address: str, token: str, credential: str, now: datetime) -> Credential:
        """The new passkey, once its attestation verifies against the token's challenge."""
        challenge = self._challenge(token, "register", address, now)
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
            )
        except (InvalidRegistrationResponse, InvalidJSONStructure, ValueError) as error:
            raise PasskeyError(f"the passkey could not be registered: {error}") from None
        return Credential(
            verified.credential_id, verified.credential_public_key, verified.sign_count
        )

    # sign-in

    def authentication(self, now: datetime) -> tuple[str, str]:
        """Request options for any of this site's passkeys (discoverable), and their token."""
        options = generate_authentication_options(
            rp_id=self.rp_id, user_verification=UserVerificationRequirement.PREFERRED
        )
        return options_to_json(options), self._token("sign-in", "", options.challenge, now)

    def authenticate(
        self, token: str, assertion: str, credentials: list[Credential], now: datetime
    ) -> Credential:
        """The account's credential that signed the token's challenge, with its new count."""
        challenge = self._challenge(token, "sign-in", "", now)
        try:
            raw_id = parse_authentication_credential_json(assertion).raw_id
        except (InvalidJSONStructure, ValueError, KeyError, TypeError):
            raise PasskeyError("the passkey answer cannot be read") from None
        known = next((c for c in credentials if hmac.compare_digest(c.credential_id, raw_id)), None)
        if known is None:
            raise PasskeyError("not a passkey of this account")
        try:
            verified = verify_authentication_response(
                credential=assertion,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
                credential_public_key=known.public_key,
                credential_current_sign_count=known.sign_count,
            )
        except (InvalidAuthenticationResponse, InvalidJSONStructure, ValueError) as error:
            raise PasskeyError(f"the passkey did not verify: {error}") from None
        return Credential(known.credential_id, known.public_key, verified.new_sign_count)

    # challenge tokens

    def _token(self, purpose: str, address: str, challenge: bytes, now: datetime) -> str:
        issued = struct.pack(">Q", int(now.timestamp()))
        mac = self._mac(purpose, address, challenge, issued)
        return b64url(issued + challenge + mac)

    def _challenge(self, token: str, purpose: str, address: str, now: datetime) -> bytes:
        try:
            data = b64url_decode(token[:4096])
        except ValueError:
            raise PasskeyError("the passkey request is damaged") from None
        if len(data) < 8 + 16 + 32:
            raise PasskeyError("the passkey request is damaged")
        issued, challenge, mac = data[:8], data[8:-32], data[-32:]
        if not hmac.compare_digest(mac, self._mac(purpose, address, challenge, issued)):
            raise PasskeyError("the passkey request is not this portal's or not for this")
        age = now.timestamp() - struct.unpack(">Q", issued)[0]
        if not -60 <= age <= timedelta(minutes=CHALLENGE_MINUTES).total_seconds():
            raise PasskeyError("the passkey request has expired; try again")
        return challenge

    def _mac(self, purpose: str, address: str, challenge: bytes, issued: bytes) -> bytes:
        message = _LABEL + f"{purpose}\x00{address.lower()}\x00".encode() + issued + challenge
        return hmac.digest(self._key, message, "sha256")
