"""Single sign-on with OpenID Connect: the authorization code flow with PKCE, and the ID
token checked before anyone is signed in (docs/identity.md).

The flow, for one provider:

1. :meth:`OIDCProvider.start` makes a state, a nonce and a PKCE verifier, and the
   provider's authorization URL. The three travel to the callback in a cookie sealed
   with AES-256-GCM (:class:`StateSealer`), so any worker or node can finish the sign-in
   and nothing is stored in between.
2. :meth:`OIDCProvider.finish` exchanges the code at the token endpoint (with the
   verifier, and the client secret for a confidential client) and checks the ID token:
   its signature against the provider's JWKS (fetched again once when a key id is
   unknown, as after the provider rotates its keys), issuer, audience, authorised party,
   expiry and issue time with a minute of clock skew, and the nonce. Only then are the
   address and the key secret read from it.

Discovery reads ``/.well-known/openid-configuration`` once an hour at most, and refuses
a document whose issuer is not the configured one (OpenID Connect Discovery §4.3). The
JOSE work (JWS signatures, JWKS, claims) is joserfc's; the HTTP is httpx's.
"""

from __future__ import annotations

import hashlib
import secrets
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from gateway import config
from gateway.envelope.keys import SSO_SECRET_MIN, b64url
from gateway.identity.sealedtokens import SealedTokens, TokenError

# What an ID token may be signed with: asymmetric algorithms only (never "none", never
# an HMAC keyed with something the client knows).
ALGORITHMS = ("RS256", "PS256", "ES256")
LEEWAY = 60  # seconds of clock skew between the provider and this node
STATE_MINUTES = 10  # from leaving for the provider to coming back
_DISCOVERY_SECONDS = 3600


class SSOError(Exception):
    """The sign-in failed. ``reason`` is a short code for the page and the audit trail;
    the message says what was wrong without any token or secret in it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ProviderUnreachable(SSOError):
    """The identity provider did not answer, or not with what OpenID Connect says."""

    def __init__(self, message: str) -> None:
        super().__init__("provider-down", message)


@dataclass(frozen=True)
class Identity:
    """Who the ID token says signed in, and their key secret (never logged)."""

    provider: str
    subject: str
    address: str
    name: str
    key_secret: str = field(repr=False)
    previous_key_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SignInState:
    """What the callback needs from the start of a sign-in (in a sealed cookie)."""

    provider: str
    state: str
    nonce: str
    verifier: str = field(repr=False)
    next_path: str


class StateSealer:
    """Seals :class:`SignInState` for the browser's cookie, and opens it at the callback."""

    def __init__(self, key: bytes) -> None:
        self._tokens = SealedTokens(key, b"sealgate v1 sso state ")

    def seal(self, state: SignInState, now: float) -> str:
        payload = [state.provider, state.state, state.nonce, state.verifier, state.next_path]
        return self._tokens.seal(payload, now)

    def open(self, token: str, now: float) -> SignInState:
        """The state in ``token``; SSOError "state" if it is damaged or too old."""
        try:
            provider, state, nonce, verifier, next_path = self._tokens.open(
                token, now, STATE_MINUTES * 60
            )
        except TokenError as error:
            if error.expired:
                raise SSOError(
                    "state", f"the sign-in took longer than {STATE_MINUTES} minutes"
                ) from None
            raise SSOError("state", "the sign-in state is missing or damaged") from None
        except ValueError:  # a payload of another shape
            raise SSOError("state", "the sign-in state is missing or damaged") from None
        return SignInState(provider, state, nonce, verifier, next_path)


@dataclass(frozen=True)
class _Metadata:
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]


class OIDCProvider:
    """One configured provider: where to send the browser, and the code's exchange."""

    def __init__(
        self, settings: config.SSOProvider, redirect_uri: str, client_secret: str | None
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.title = settings.title or settings.name
        self.redirect_uri = redirect_uri
        self._client_secret = client_secret
        self._metadata: _Metadata | None = None
        self._fetched_at = 0.0
        self._keys: KeySet | None = None

    def __repr__(self) -> str:
        return f"OIDCProvider({self.name!r}, issuer={self.settings.issuer!r})"

    # --- the way out ------------------------------------------------------------

    async def start(self, next_path: str) -> tuple[str, SignInState]:
        """The provider's authorization URL for a new sign-in, and the state to seal."""
        metadata = await self._discover()
        state = SignInState(
            provider=self.name,
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(64),  # 86 characters: RFC 7636 §4.1 allows 43-128
            next_path=next_path,
        )
        scopes = ["openid", *(s for s in self.settings.scopes if s != "openid")]
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": " ".join(scopes),
                "state": state.state,
                "nonce": state.nonce,
                "code_challenge": _s256(state.verifier),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        return f"{metadata.authorization_endpoint}{separator}{query}", state

    # --- the way back -----------------------------------------------------------

    async def finish(self, state: SignInState, code: str, now: float) -> Identity:
        """The identity in the ID token the code is exchanged for; SSOError otherwise."""
        return await self.identity_in(await self.exchange(state, code), state.nonce, now)

    async def exchange(self, state: SignInState, code: str) -> str:
        """The ID token the provider gives for ``code`` (RFC 6749 §4.1.3, with PKCE)."""
        metadata = await self._discover()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": state.verifier,
        }
        auth: httpx.BasicAuth | None = None
        if self._client_secret is not None:  # client_secret_basic, RFC 6749 §2.3.1
            auth = httpx.BasicAuth(
                _form_encode(self.settings.client_id), _form_encode(self._client_secret)
            )
        else:
            form["client_id"] = self.settings.client_id
        response = await self._request("POST", metadata.token_endpoint, data=form, auth=auth)
        if response.status_code != 200:
            error = _json(response).get("error", f"HTTP {response.status_code}")
            raise SSOError("token", f"the provider refused the code: {str(error)[:80]}")
        raw = _json(response).get("id_token")
        if not isinstance(raw, str):
            raise SSOError("id-token", "the token response has no ID token")
        return raw

    async def identity_in(self, raw: str, nonce: str, now: float) -> Identity:
        """Who ``raw``, an ID token, says signed in, once it checks out for this provider,
        this client and ``nonce`` at ``now``; SSOError otherwise."""
        metadata = await self._discover()
        return self._identity(await self._checked_claims(metadata, raw, nonce, now))

    async def _checked_claims(
        self, metadata: _Metadata, raw: str, nonce: str, now: float
    ) -> dict[str, Any]:
        keys = await self._jwks(metadata, refresh=False)
        try:
            token = self._decode(raw, keys, metadata)
        except _UnknownKey:  # the provider may have rotated its keys: ask once more
            try:
                token = self._decode(raw, await self._jwks(metadata, refresh=True), metadata)
            except _UnknownKey:
                raise SSOError(
                    "id-token", "the ID token is signed with a key the provider does not publish"
                ) from None
        claims: dict[str, Any] = dict(token.claims)
        registry = jwt.JWTClaimsRegistry(
            now=int(now),
            leeway=LEEWAY,
            iss={"essential": True, "value": self.settings.issuer},
            aud={"essential": True, "value": self.settings.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as error:
            raise SSOError("id-token", f"the ID token is not valid here: {error}") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.settings.client_id:
            raise SSOError("id-token", "the ID token was issued to another party (azp)")
        return claims

    def _decode(self, raw: str, keys: KeySet, metadata: _Metadata) -> jwt.Token:
        try:
            return jwt.decode(raw, keys, algorithms=list(metadata.algorithms))
        except InvalidKeyIdError:
            raise _UnknownKey() from None
        except (JoseError, ValueError) as error:
            raise SSOError("id-token", f"the ID token does not verify: {error}") from None

    def _identity(self, claims: dict[str, Any]) -> Identity:
        address = claims.get("email")
        if not isinstance(address, str) or address.count("@") != 1:
            raise SSOError("address", "the ID token names no email address")
        address = address.strip().lower()
        if claims.get("email_verified") is False:
            raise SSOError("address", "the provider has not verified the email address")
        if address.rpartition("@")[2] not in self.settings.domains:
            raise SSOError("address", f"{address} is not in this provider's domains")
        secret = claims.get(self.settings.key_claim)
        if not isinstance(secret, str) or len(secret) < SSO_SECRET_MIN:
            raise SSOError(
                "key-secret",
                f"the ID token has no usable {self.settings.key_claim!r} claim "
                f"(a string of at least {SSO_SECRET_MIN} characters)",
            )
        previous = claims.get(self.settings.previous_key_claim or "")
        usable_previous = isinstance(previous, str) and len(previous) >= SSO_SECRET_MIN
        name = claims.get("name")
        return Identity(
            provider=self.name,
            subject=str(claims["sub"]),
            address=address,
            name=name if isinstance(name, str) else "",
            key_secret=secret,
            previous_key_secret=previous if usable_previous else None,
        )

    # --- the provider's documents -------------------------------------------------

    async def _discover(self) -> _Metadata:
        fresh = time.monotonic() - self._fetched_at < _DISCOVERY_SECONDS
        if self._metadata is not None and fresh:
            return self._metadata
        url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = _json(await self._request("GET", url))
        if document.get("issuer") != self.settings.issuer:
            raise ProviderUnreachable(
                f"the discovery document names issuer {str(document.get('issuer'))[:100]!r}, "
                f"not {self.settings.issuer!r}"
            )
        try:
            offered = document.get("id_token_signing_alg_values_supported") or ["RS256"]
            metadata = _Metadata(
                authorization_endpoint=str(document["authorization_endpoint"]),
                token_endpoint=str(document["token_endpoint"]),
                jwks_uri=str(document["jwks_uri"]),
                algorithms=tuple(a for a in ALGORITHMS if a in offered) or ("RS256",),
            )
        except KeyError as missing:
            raise ProviderUnreachable(f"the discovery document lacks {missing}") from None
        self._metadata, self._fetched_at, self._keys = metadata, time.monotonic(), None
        return metadata

    async def _jwks(self, metadata: _Metadata, refresh: bool) -> KeySet:
        if self._keys is None or refresh:
            document = _json(await self._request("GET", metadata.jwks_uri))
            try:
                self._keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
            except (ValueError, KeyError, TypeError, JoseError):
                raise ProviderUnreachable("the provider's JWKS cannot be read") from None
        return self._keys

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        verify: ssl.SSLContext | bool = True
        if self.settings.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(self.settings.ca_file))
        try:
            async with httpx.AsyncClient(
                timeout=self.settings.timeout, verify=verify, follow_redirects=False
            ) as client:
                return await client.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            raise ProviderUnreachable(
                f"{self.name}: {method} {url} failed: {type(error).__name__}"
            ) from None


class _UnknownKey(Exception):
    """The ID token's key id is not in the JWKS we have: fetch it again, once."""


def _s256(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _form_encode(value: str) -> str:
    """RFC 6749 §2.3.1: client id and secret are form-urlencoded before Basic auth."""
    return urlencode({"": value})[1:]


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        raise ProviderUnreachable(f"{response.url} did not answer with JSON") from None
    if not isinstance(document, dict):
        raise ProviderUnreachable(f"{response.url} did not answer with a JSON object")
    return document


def providers(settings: config.SSO, portal_url: str) -> dict[str, OIDCProvider]:
    """The configured providers by name, each with its callback under ``portal_url``."""
    made = {}
    for provider in settings.providers:
        secret = None
        if provider.client_secret_file is not None:
            secret = provider.client_secret_file.read_text(encoding="utf-8").strip()
        redirect = f"{portal_url.rstrip('/')}/sso/{provider.name}/callback"
        made[provider.name] = OIDCProvider(provider, redirect, secret)
    return made
