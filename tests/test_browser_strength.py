"""gateway/portal/static/strength.js, the sign-up password check, in a real browser.

The bench of tests/test_browser_account.py (tests/support/browser.py ``module_page``,
chromium launched once for the module), with every response carrying the headers the portal's
own middleware (gateway/portal/security.py) puts on a /static/ file: the check and the
vendored zxcvbn-ts it imports run under the portal's real Content-Security-Policy, and the
page's securitypolicyviolation events must stay empty (a refused eval that the code catches
logs no console error; the event is still fired).
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.portal import i18n, security
from tests.support import browser

pytestmark = pytest.mark.peers  # every test runs in chromium (the autouse `page`)

TEST_JS = r"""
const violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  violations.push({ directive: event.effectiveDirective, blocked: event.blockedURI });
});
// Imported once the listener is there: whatever strength.js does is seen.
const { checkPassword, MIN_LENGTH } = await import("/static/strength.js");

// Chromium lets code that runs inside a DevTools evaluation (Playwright's page.evaluate, so
// sgTest's calls) use eval whatever the page's CSP says; the same call from a task of the
// page's own is refused. So everything that runs strength.js or the estimator runs in a task.
const inTask = (run) => new Promise((resolve, reject) => {
  setTimeout(() => run().then(resolve, reject), 0);
});

// The first check, as the page loads: it imports the vendored estimator.
const first = inTask(() => checkPassword("correct horse battery staple"));

export async function check(cases) {
  return inTask(async () => {
    const results = [];
    for (const { password, userInputs } of cases) {
      results.push(await checkPassword(password, userInputs ? { userInputs } : undefined));
    }
    return results;
  });
}

export async function refusals(cases) {
  return inTask(async () => {
    const outcomes = [];
    for (const args of cases) {
      try {
        await checkPassword(...args);
        outcomes.push(null);
      } catch (error) {
        outcomes.push(`${error.name}: ${error.message}`);
      }
    }
    return outcomes;
  });
}

// The control: the page's policy must refuse eval, or "no violation" proves nothing.
export async function evalRefused() {
  return inTask(async () => {
    try {
      return eval("false");
    } catch (error) {
      return error instanceof EvalError;
    }
  });
}

export async function loaded() {
  const scripts = performance.getEntriesByType("resource")
    .map((entry) => new URL(entry.name).pathname).filter((path) => path.endsWith(".js"));
  return { first: await first, scripts, violations: [...violations], minLength: MIN_LENGTH };
}

window.sgTest = { check, refusals, evalRefused, loaded };
"""

TOO_SHORT = "Use at least 12 characters."
COMMON = "This is one of the most common passwords."
PERSONAL = "Leave out your email address and the organisation's name."
WEAK = "This password is easy to guess: add a few more words."

ADDRESS = "zoe.muller@example.org"
USER_INPUTS = [ADDRESS, "zoe.muller", "Example Zorg"]

Page = browser.ModulePage


def static_headers() -> dict[str, str]:
    """What gateway.portal.security.SecurityHeaders adds to a /static/ response, less
    Cache-Control (the test server sends its own)."""
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    middleware = security.SecurityHeaders(app, https=False)
    asyncio.run(middleware({"type": "http", "path": "/static/strength.js"}, receive, send))
    headers = {name.decode(): value.decode() for name, value in sent[0]["headers"]}
    del headers["cache-control"]
    return headers


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    headers = static_headers()
    assert headers["content-security-policy"] == security.CSP
    with browser.module_page(TEST_JS, headers=headers) as tab:
        yield tab


@pytest.fixture(autouse=True)
def no_console_errors(page: Page) -> Iterator[None]:
    yield
    assert page.take_errors() == []


def check(page: Page, *cases: str | tuple[str, list[str]]) -> list[dict[str, Any]]:
    """checkPassword for each password, or (password, userInputs), in the page."""
    arguments = [
        {"password": case}
        if isinstance(case, str)
        else {"password": case[0], "userInputs": case[1]}
        for case in cases
    ]
    results: list[dict[str, Any]] = page.call("check", arguments)
    return results


def test_the_most_common_passwords_are_refused(page: Page) -> None:
    password, digits, leet = check(page, "password", "123456789012", "P4ssw0rd")
    assert password == {"ok": False, "score": 0, "problems": [TOO_SHORT, COMMON]}
    # long enough, but on the list: only that is said
    assert digits["ok"] is False and digits["score"] < 3
    assert digits["problems"] == [COMMON]
    assert leet["problems"] == [TOO_SHORT, COMMON]


def test_eleven_random_characters_are_too_few_and_twelve_pass(page: Page) -> None:
    eleven = "rT8#wq2Lm!z"
    short, enough = check(page, eleven, eleven + "K")
    assert len(eleven) == 11
    # strong for its length, yet refused: the length is a rule of its own
    assert short == {"ok": False, "score": 4, "problems": [TOO_SHORT]}
    assert enough == {"ok": True, "score": 4, "problems": []}


def test_four_random_words_pass_and_a_guessable_phrase_does_not(page: Page) -> None:
    words, weak = check(page, "lantern quarry velvet moss", "iloveyou1234")
    assert words == {"ok": True, "score": 4, "problems": []}
    assert weak["ok"] is False and weak["score"] < 3
    assert weak["problems"] == [WEAK]


def test_the_address_and_the_organisation_lower_the_score(page: Page) -> None:
    password = "zoe.muller2024!"
    alone, personal, by_word = check(
        page,
        password,
        (password, USER_INPUTS),
        # the address and the name as given: the words in them are found too
        ("Zorg4Muller!", [ADDRESS, "Example Zorg"]),
    )
    assert alone["ok"] is True
    assert personal["score"] < alone["score"]
    assert personal == {"ok": False, "score": personal["score"], "problems": [PERSONAL, WEAK]}
    [unrelated] = check(page, ("Zorg4Muller!", ["someone@elsewhere.test"]))
    assert by_word["score"] < unrelated["score"]


def test_nfc_and_nfd_spellings_have_the_same_length(page: Page) -> None:
    """Characters are code points after NFC, as account.js derives the keys: an NFD "é" is one
    character, not two."""
    eleven = "Zoë café 7Ä"  # 11 characters, 3 of them precomposed
    twelve = eleven + "q"
    cases = [
        unicodedata.normalize(form, text) for text in (eleven, twelve) for form in ("NFC", "NFD")
    ]
    assert [len(case) for case in cases] == [11, 14, 12, 15]
    short_nfc, short_nfd, long_nfc, long_nfd = check(page, *cases)
    assert short_nfc == short_nfd
    assert short_nfc["problems"] == [TOO_SHORT]
    assert long_nfc == long_nfd
    assert TOO_SHORT not in long_nfc["problems"]


def test_bad_arguments_are_refused(page: Page) -> None:
    refused = page.call(
        "refusals",
        [
            [None],
            [12345678901234],
            ["long enough pass", {"userInputs": "a"}],
            ["long enough pass", {"userInputs": [42]}],
        ],
    )
    assert refused == [
        "TypeError: the password must be a string",
        "TypeError: the password must be a string",
        "TypeError: userInputs must be an array of strings",
        "TypeError: userInputs must be strings",
    ]


def test_the_problems_are_msgids_the_page_translates(page: Page) -> None:
    loaded = page.call("loaded")
    assert re.search(rf"\b{loaded['minLength']}\b", TOO_SHORT)
    dutch = i18n.page_strings("nl")
    for problem in (TOO_SHORT, COMMON, PERSONAL, WEAK):
        assert dutch[problem] != problem


def test_the_vendored_estimator_loads_under_the_portals_csp(page: Page) -> None:
    loaded = page.call("loaded")
    assert loaded["first"] == {"ok": True, "score": 4, "problems": []}
    assert loaded["scripts"] == [
        "/test.js",
        "/static/strength.js",
        "/static/vendor/zxcvbn-ts/zxcvbn-ts.js",
    ]
    assert loaded["violations"] == []
    assert page.take_errors() == []
    # the control: the same page refuses eval, and reports it
    assert page.call("evalRefused") is True
    assert page.call("loaded")["violations"] == [{"directive": "script-src", "blocked": "eval"}]
