"""A real OpenID provider on loopback: panva's certified ``oidc-provider`` run by Node.js.

:class:`OIDCProvider` writes the configuration (accounts, clients, extra scopes) to a JSON
file, runs ``node tests/support/oidc/provider.js`` on it and reads the issuer from the one
line the program prints when it listens (port 0: the kernel picks the port). Clients and
accounts are set before :meth:`OIDCProvider.start`; the issuer is known only after it, so a
test starts the provider first and then configures the relying party with ``.issuer``.
``stop`` ends the process group. Several providers run side by side, one process each.

Every account gets a random ``sealgate_key_secret`` (base64url, 32 bytes), released in the
ID token for the scope ``sealgate``: the per-user secret an organisation's identity provider
supplies at single sign-on (DESIGN.md, "The sealed envelope").

:func:`sign_in` is the person at the keyboard: from an authorization URL it follows the
provider's redirects and fills its login and consent forms with httpx, and returns the
redirect back to the client. Chromium can fill the same forms (``input[name=login]``,
``input[name=password]``, the "Sign in" and "Allow" buttons).

Node.js missing is a failure, not a skip: ``make test`` installs Debian's ``nodejs`` and
``npm``. The npm packages are installed with ``npm ci`` from the committed lock file, once,
into tests/support/oidc/node_modules (re-installed when the lock file changes).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import selectors
import shutil
import signal
import ssl
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from tests.support.certs import CertFiles

PACKAGE = Path(__file__).resolve().parent / "oidc"
PROGRAM = PACKAGE / "provider.js"
LOCK_FILE = PACKAGE / "package-lock.json"
INSTALL = "apt-get install -y --no-install-recommends nodejs npm"
KEY_SECRET_CLAIM = "sealgate_key_secret"
KEY_SECRET_SCOPE = "sealgate"


@dataclass(frozen=True)
class Account:
    """A person at the provider; ``claims`` are released for the scopes that name them."""

    sub: str
    email: str
    password: str
    name: str
    email_verified: bool = True
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def key_secret(self) -> str:
        return str(self.claims[KEY_SECRET_CLAIM])

    def config(self) -> dict[str, Any]:
        return {
            "sub": self.sub,
            "email": self.email,
            "email_verified": self.email_verified,
            "name": self.name,
            "password": self.password,
            "claims": self.claims,
        }


@dataclass(frozen=True)
class Client:
    """A registered relying party; ``client_secret`` is None for a public (PKCE-only) client."""

    client_id: str
    client_secret: str | None
    redirect_uris: tuple[str, ...]
    metadata: dict[str, Any]


class OIDCProvider:
    """One oidc-provider process; configure, then ``start()`` (or ``with``), then ``.issuer``."""

    def __init__(
        self,
        directory: Path,
        *,
        tls: CertFiles | None = None,
        scopes: dict[str, list[str]] | None = None,
        signing_keys: int = 2,
        claims_in_id_token: bool = True,
    ) -> None:
        """``directory`` holds the configuration and the log.

        ``scopes`` maps extra scopes to the claims they release (default: ``sealgate`` releases
        ``sealgate_key_secret``; openid, email and profile are always there). With
        ``signing_keys`` > 1 the JWKS publishes that many RS256 keys and the first one signs.
        ``claims_in_id_token=False`` keeps the scopes' claims out of the ID token (OIDC Core
        5.4: then they come only from the userinfo endpoint). ``tls`` serves HTTPS with that
        certificate (it covers 127.0.0.1); the issuer is then ``https://``.
        """
        self.directory = directory
        self.tls = tls
        self.scopes = scopes if scopes is not None else {KEY_SECRET_SCOPE: [KEY_SECRET_CLAIM]}
        self.signing_keys = signing_keys
        self.claims_in_id_token = claims_in_id_token
        self.accounts: list[Account] = []
        self.clients: list[Client] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._ready: dict[str, Any] = {}

    def add_account(
        self,
        sub: str,
        *,
        email: str | None = None,
        password: str | None = None,
        name: str | None = None,
        email_verified: bool = True,
        **claims: Any,
    ) -> Account:
        """An account; its password and ``sealgate_key_secret`` are random unless given."""
        claims.setdefault(KEY_SECRET_CLAIM, secrets.token_urlsafe(32))
        account = Account(
            sub=sub,
            email=email or f"{sub}@example.test",
            password=password or secrets.token_urlsafe(12),
            name=name or sub.capitalize(),
            email_verified=email_verified,
            claims=claims,
        )
        self._before_start()
        self.accounts.append(account)
        return account

    def add_client(
        self,
        redirect_uris: list[str],
        *,
        client_id: str | None = None,
        public: bool = False,
        **metadata: Any,
    ) -> Client:
        """A client with the authorization code flow (PKCE S256 is always required).

        Confidential by default (a random secret, ``client_secret_basic``); ``public=True``
        registers one without a secret (``token_endpoint_auth_method = "none"``). Further
        ``metadata`` is oidc-provider's client metadata (RFC 7591 names), passed as it is.
        """
        client_id = client_id or f"client-{len(self.clients) + 1}"
        secret = None if public else secrets.token_urlsafe(24)
        data: dict[str, Any] = {
            "client_id": client_id,
            "redirect_uris": list(redirect_uris),
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        }
        if public:
            data["token_endpoint_auth_method"] = "none"
        else:
            data["client_secret"] = secret
        data.update(metadata)
        client = Client(client_id, secret, tuple(redirect_uris), data)
        self._before_start()
        self.clients.append(client)
        return client

    def account(self, sub: str) -> Account:
        return next(account for account in self.accounts if account.sub == sub)

    @property
    def issuer(self) -> str:
        return str(self._started()["issuer"])

    @property
    def port(self) -> int:
        return int(self._started()["port"])

    @property
    def kids(self) -> list[str]:
        """The key ids in the JWKS; the first one signs."""
        return list(self._started()["kids"])

    @property
    def node_version(self) -> str:
        """The Node.js that runs the provider (``v20.19.2``)."""
        return str(self._started()["node"])

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def log(self) -> str:
        path = self.directory / "provider.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def http(self, **options: Any) -> httpx.Client:
        """An httpx client that trusts the provider's certificate (when it has one)."""
        if self.tls:
            options.setdefault("verify", ssl.create_default_context(cafile=self.tls.ca))
        options.setdefault("timeout", 10)
        return httpx.Client(**options)

    def config(self) -> dict[str, Any]:
        """The configuration file's content (docs/testing.md describes it)."""
        tls = {"cert": str(self.tls.certificate), "key": str(self.tls.key)} if self.tls else None
        return {
            "tls": tls,
            "clients": [client.metadata for client in self.clients],
            "accounts": [account.config() for account in self.accounts],
            "scopes": self.scopes,
            "signing_keys": self.signing_keys,
            "claims_in_id_token": self.claims_in_id_token,
        }

    def start(self, timeout: float = 30) -> OIDCProvider:
        """Run the provider and wait for its ready line; raises RuntimeError if it fails."""
        self._before_start()
        node = _node()
        install_packages()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "provider.json"
        path.write_text(json.dumps(self.config(), indent=2))
        with open(self.directory / "provider.log", "wb") as log:
            self._process = subprocess.Popen(
                [node, str(PROGRAM), str(path)],
                cwd=PACKAGE,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        try:
            self._ready = self._read_ready_line(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """End the provider's process group (it and any child); idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        for signum, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, signum)
            except ProcessLookupError:
                break
            try:
                process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> OIDCProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _read_ready_line(self, timeout: float) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            if selector.select(timeout):
                line = stdout.readline()
                if line:
                    return dict(json.loads(line))
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(1)  # standard output closed: it is exiting
        raise RuntimeError(
            f"the OpenID provider did not start (exit code {self._process.returncode}):\n{self.log}"
        )

    def _started(self) -> dict[str, Any]:
        if not self._ready:
            raise RuntimeError("the OpenID provider is not started: call start() first")
        return self._ready

    def _before_start(self) -> None:
        if self._process is not None:
            raise RuntimeError("configure the OpenID provider before start(); it reads it once")


def _node() -> str:
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        raise RuntimeError(f"Node.js and npm are not installed; run as root: {INSTALL}")
    return node


def install_packages() -> None:
    """``npm ci`` into tests/support/oidc/node_modules unless the lock file is installed there.

    A stamp named after the lock file's digest says it is; a file lock keeps two test
    processes from installing at once.
    """
    digest = hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()[:16]
    stamp = PACKAGE / "node_modules" / f".sealgate-installed-{digest}"
    if stamp.exists():
        return
    with open(PACKAGE / ".npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return
        result = subprocess.run(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", str(PACKAGE)],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"npm ci in {PACKAGE} failed ({result.returncode}):\n"
                f"{result.stderr.decode(errors='replace')[-3000:]}"
            )
        stamp.touch()


class SignInRefused(AssertionError):
    """The provider showed its login form again (wrong account or password)."""


class _Forms(HTMLParser):
    """The forms of a page: their action, fields and submit buttons' texts; and any alert."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.alert: list[str] = []
        self._in_alert = False
        self._in_button = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({"action": values.get("action", ""), "fields": {}, "button": ""})
        elif tag == "input" and self.forms and "name" in values:
            self.forms[-1]["fields"][values["name"]] = values.get("value", "")
        elif tag == "button":
            self._in_button = True
        elif values.get("role") == "alert":
            self._in_alert = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self._in_button = False
        elif tag == "p":
            self._in_alert = False

    def handle_data(self, data: str) -> None:
        if self._in_button and self.forms:
            self.forms[-1]["button"] += data.strip()
        if self._in_alert:
            self.alert.append(data.strip())

    def form(self, button: str) -> dict[str, Any] | None:
        return next((form for form in self.forms if form["button"] == button), None)


def sign_in(
    client: httpx.Client,
    authorization_url: str,
    *,
    login: str,
    password: str,
    redirect_uri: str,
    consent: bool = True,
    max_steps: int = 12,
) -> httpx.URL:
    """Follow an authorization request through the provider's pages as a person would.

    Follows redirects, types ``login`` and ``password`` into the login form, presses "Allow"
    (or "Deny" when ``consent`` is False) on the consent page, and returns the URL the provider
    finally redirects to under ``redirect_uri`` (with ``code``, ``state`` and ``iss``, or an
    ``error``), without fetching it. ``client`` keeps the provider's cookies: a second
    sign-in with the same client finds the session. Raises :class:`SignInRefused` when the
    login form comes back, and AssertionError on any other page.
    """
    response = client.get(authorization_url, follow_redirects=False)
    for _ in range(max_steps):
        if response.is_redirect:
            target = urljoin(str(response.url), response.headers["location"])
            if target.startswith(redirect_uri):
                return httpx.URL(target)
            response = client.get(target, follow_redirects=False)
            continue
        page = _Forms()
        page.feed(response.text)
        login_form = page.form("Sign in")
        if login_form is not None and "password" in login_form["fields"]:
            if page.alert:
                raise SignInRefused(" ".join(page.alert))
            fields = {**login_form["fields"], "login": login, "password": password}
            response = _post(client, response.url, login_form["action"], fields)
            continue
        consent_form = page.form("Allow" if consent else "Deny")
        if consent_form is not None:
            response = _post(client, response.url, consent_form["action"], consent_form["fields"])
            continue
        raise AssertionError(
            f"unexpected page from the provider ({response.status_code}):\n{response.text[:2000]}"
        )
    raise AssertionError(f"no redirect to {redirect_uri} after {max_steps} steps")


def _post(
    client: httpx.Client, page: httpx.URL, action: str, fields: dict[str, str]
) -> httpx.Response:
    return client.post(urljoin(str(page), action), data=fields, follow_redirects=False)
