"""The OpenID provider the single sign-on tests stand on (tests/support/oidc.py), end to end.

No Sealgate code here: these tests play the relying party with httpx and authlib, as the
portal will, to show that the peer is a real provider: discovery, the authorization code flow
with PKCE through its login and consent forms, an ID token that authlib validates against the
provider's JWKS and that carries the account's ``sealgate_key_secret``, and the refusals.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidClaimError, InvalidKeyIdError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from tests.support.browser import chromium
from tests.support.certs import CertFiles
from tests.support.oidc import Client, OIDCProvider, SignInRefused, sign_in

pytestmark = pytest.mark.peers

REDIRECT_URI = "http://127.0.0.1:9/sso/callback"  # never fetched: sign_in stops before it
SCOPE = "openid email profile sealgate"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCProvider]:
    """One provider for the module: accounts alice and bob, a confidential and a public client."""
    provider = OIDCProvider(tmp_path_factory.mktemp("oidc"))
    provider.add_account("alice", name="Alice Example", email="Alice@Example.test")
    provider.add_account("bob")
    provider.add_client([REDIRECT_URI], client_id="portal")
    provider.add_client([REDIRECT_URI], client_id="portal-public", public=True)
    with provider:
        yield provider


def discover(provider: OIDCProvider) -> dict[str, Any]:
    with provider.http() as http:
        response = http.get(provider.discovery_url)
        response.raise_for_status()
        return dict(response.json())


def authorization_url(metadata: dict[str, Any], client: Client, **params: str) -> str:
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uris[0],
        "scope": SCOPE,
        **params,
    }
    return f"{metadata['authorization_endpoint']}?{urlencode(query)}"


class Login:
    """One relying-party login: state, nonce and PKCE verifier, then the code for tokens."""

    def __init__(self, provider: OIDCProvider, client: Client) -> None:
        self.provider = provider
        self.client = client
        self.metadata = discover(provider)
        self.state = generate_token(20)
        self.nonce = generate_token(20)
        self.verifier = generate_token(48)

    def url(self) -> str:
        return authorization_url(
            self.metadata,
            self.client,
            state=self.state,
            nonce=self.nonce,
            code_challenge=create_s256_code_challenge(self.verifier),
            code_challenge_method="S256",
        )

    def code(self, http: httpx.Client, login: str, password: str) -> str:
        answer = sign_in(
            http, self.url(), login=login, password=password, redirect_uri=REDIRECT_URI
        )
        assert answer.params["state"] == self.state
        assert answer.params["iss"] == self.provider.issuer  # RFC 9207
        return answer.params["code"]

    def tokens(self, http: httpx.Client, code: str, verifier: str | None = None) -> httpx.Response:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier or self.verifier,
        }
        if self.client.client_secret is None:
            form["client_id"] = self.client.client_id
            return http.post(self.metadata["token_endpoint"], data=form)
        auth = (self.client.client_id, self.client.client_secret)
        return http.post(self.metadata["token_endpoint"], data=form, auth=auth)


def validate_id_token(
    provider: OIDCProvider, client: Client, token: dict[str, Any], nonce: str
) -> CodeIDToken:
    """What authlib's OpenIDMixin.parse_id_token does: signature by the JWKS, then the claims."""
    metadata = discover(provider)
    with provider.http() as http:
        keys = KeySet.import_key_set(http.get(metadata["jwks_uri"]).json())
    registry = JWSRegistry(algorithms=metadata["id_token_signing_alg_values_supported"])
    decoded = jwt.decode(token["id_token"], keys, registry=registry)
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        {"iss": {"values": [metadata["issuer"]]}},
        {"nonce": nonce, "client_id": client.client_id, "access_token": token["access_token"]},
    )
    claims.validate(leeway=5)
    return claims


def test_discovery_names_the_code_flow_with_s256_and_two_rs256_keys(idp: OIDCProvider) -> None:
    metadata = discover(idp)

    assert metadata["issuer"] == idp.issuer == f"http://127.0.0.1:{idp.port}"
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert metadata[endpoint].startswith(idp.issuer + "/")
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"openid", "email", "profile", "sealgate"} <= set(metadata["scopes_supported"])
    assert "sealgate_key_secret" in metadata["claims_supported"]
    with idp.http() as http:
        keys = http.get(metadata["jwks_uri"]).json()["keys"]
    assert [key["kid"] for key in keys] == idp.kids and len(keys) == 2
    assert {(key["kty"], key["alg"], key["use"]) for key in keys} == {("RSA", "RS256", "sig")}
    assert not any("d" in key for key in keys)  # public halves only


def test_code_flow_with_pkce_gives_an_id_token_with_the_key_secret(idp: OIDCProvider) -> None:
    alice = idp.account("alice")
    client = idp.clients[0]
    login = Login(idp, client)
    with idp.http() as http:
        code = login.code(http, "alice@example.TEST", alice.password)  # e-mail in any case
        response = login.tokens(http, code)
        assert response.status_code == 200, response.text
        token = response.json()
        claims = validate_id_token(idp, client, token, login.nonce)

        assert claims.header["kid"] == idp.kids[0]  # the first key signs
        assert claims["sub"] == "alice"
        assert claims["aud"] == "portal"
        assert claims["email"] == "Alice@Example.test" and claims["email_verified"] is True
        assert claims["name"] == "Alice Example"
        assert claims["sealgate_key_secret"] == alice.key_secret
        assert claims["exp"] > time.time()

        userinfo = http.get(
            login.metadata["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {token['access_token']}"},
        ).json()
        assert userinfo["sub"] == "alice"
        assert userinfo["sealgate_key_secret"] == alice.key_secret

        # The code is spent: a second exchange is refused.
        assert login.tokens(http, code).json()["error"] == "invalid_grant"


def test_each_account_has_its_own_key_secret_and_scopes_limit_the_claims(
    idp: OIDCProvider,
) -> None:
    bob = idp.account("bob")
    assert bob.key_secret != idp.account("alice").key_secret
    client = idp.clients[1]  # the public client: no secret, PKCE alone
    login = Login(idp, client)
    url = login.url().replace("+sealgate", "").replace("+profile", "")
    with idp.http() as http:
        answer = sign_in(http, url, login="bob", password=bob.password, redirect_uri=REDIRECT_URI)
        token = login.tokens(http, answer.params["code"]).json()
        claims = validate_id_token(idp, client, token, login.nonce)

    assert claims["sub"] == "bob" and claims["email"] == bob.email
    assert "sealgate_key_secret" not in claims and "name" not in claims


def test_the_id_token_is_checked_for_nonce_and_signature(idp: OIDCProvider) -> None:
    client = idp.clients[0]
    login = Login(idp, client)
    with idp.http() as http:
        token = login.tokens(http, login.code(http, "alice", idp.account("alice").password)).json()

    with pytest.raises(InvalidClaimError, match="nonce"):
        validate_id_token(idp, client, token, nonce="another")
    header, payload, signature = token["id_token"].split(".")
    forged = f"{header}.{payload}.{signature[:-8]}AAAAAAAA"
    with pytest.raises(BadSignatureError):
        validate_id_token(idp, client, {**token, "id_token": forged}, login.nonce)


def test_a_wrong_password_is_refused(idp: OIDCProvider) -> None:
    login = Login(idp, idp.clients[0])
    with idp.http() as http, pytest.raises(SignInRefused, match="Wrong account or password"):
        login.code(http, "alice", idp.account("bob").password)
    with idp.http() as http, pytest.raises(SignInRefused):
        login.code(http, "nobody", "anything")


def test_pkce_is_required(idp: OIDCProvider) -> None:
    client = idp.clients[0]
    login = Login(idp, client)
    with idp.http() as http:
        without = authorization_url(login.metadata, client, state="s", nonce="n")
        answer = sign_in(http, without, login="alice", password="-", redirect_uri=REDIRECT_URI)
        assert answer.params["error"] == "invalid_request"
        assert "PKCE" in answer.params["error_description"]
        assert "code" not in answer.params

        plain = authorization_url(
            login.metadata, client, code_challenge=login.verifier, code_challenge_method="plain"
        )
        answer = sign_in(http, plain, login="alice", password="-", redirect_uri=REDIRECT_URI)
        assert answer.params["error"] == "invalid_request"

        code = login.code(http, "alice", idp.account("alice").password)
        refused = login.tokens(http, code, verifier=generate_token(48))
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_denying_consent_returns_access_denied(idp: OIDCProvider) -> None:
    login = Login(idp, idp.clients[0])
    with idp.http() as http:
        answer = sign_in(
            http,
            login.url(),
            login="bob",
            password=idp.account("bob").password,
            redirect_uri=REDIRECT_URI,
            consent=False,
        )
    assert answer.params["error"] == "access_denied"


def test_two_providers_side_by_side_one_over_tls_with_claims_from_userinfo(
    oidc_provider: Callable[..., OIDCProvider], certs: CertFiles
) -> None:
    plain = oidc_provider()
    plain.add_account("alice")
    plain.add_client([REDIRECT_URI], client_id="portal")
    tls = oidc_provider(tls=certs, claims_in_id_token=False, signing_keys=1)
    carol = tls.add_account("carol")
    client = tls.add_client([REDIRECT_URI], client_id="portal")
    plain.start()
    tls.start()

    assert tls.issuer == f"https://127.0.0.1:{tls.port}" and tls.port != plain.port
    login = Login(tls, client)
    with tls.http() as http:
        token = login.tokens(http, login.code(http, "carol", carol.password)).json()
        claims = validate_id_token(tls, client, token, login.nonce)
        userinfo = http.get(
            login.metadata["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {token['access_token']}"},
        ).json()
    assert claims["sub"] == "carol" and "sealgate_key_secret" not in claims
    assert userinfo["sealgate_key_secret"] == carol.key_secret
    # The other provider's JWKS has no key for this provider's token.
    with pytest.raises(InvalidKeyIdError):
        validate_id_token(plain, plain.clients[0], token, login.nonce)

    pid = tls.pid
    assert pid is not None
    tls.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_chromium_fills_the_login_and_consent_forms(idp: OIDCProvider) -> None:
    alice = idp.account("alice")
    login = Login(idp, idp.clients[0])
    reached: list[str] = []
    with chromium() as browser:
        page = browser.new_page()
        page.route(
            f"{REDIRECT_URI}**",
            lambda route: (reached.append(route.request.url), route.fulfill(body="signed in")),
        )
        page.goto(login.url())
        page.fill("input[name=login]", alice.email)
        page.fill("input[name=password]", alice.password)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(f"{REDIRECT_URI}**")
        page.close()
    answer = httpx.URL(reached[0])
    assert answer.params["state"] == login.state
    with idp.http() as http:
        token = login.tokens(http, answer.params["code"]).json()
    assert validate_id_token(idp, idp.clients[0], token, login.nonce)["sub"] == "alice"
