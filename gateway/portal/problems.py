"""The portal's JSON errors: a code the page translates, an English message, extra fields."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class Problem(Exception):
    """A JSON error answer: status, code and extra fields."""

    def __init__(self, status: int, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.extra = extra


MESSAGES = {
    "bad-request": "The request could not be understood.",
    "csrf": "The page is out of date; reload it and try again.",
    "method": "This way of verifying is not available for this message.",
    "verify": "Please verify again.",
    "wrong-code": "That code is not right.",
    "locked": "Too many attempts; wait and try again.",
    "send-limit": "No more codes can be sent for now; a code already sent still works.",
    "closed": "Too many wrong access codes for this message; confirm another way.",
    "expired": "This message has expired.",
    "revoked": "The sender withdrew this message.",
    "unknown": "This link is not valid.",
    "too-large": "That is too large to send.",
    "unavailable": "We could not send the code right now; try again in a minute.",
    "sign-in": "The address, password or code is not right.",
    "account-exists": "This address has an account already: sign in instead.",
    "upload": "The browser sent keys the server cannot accept; reload the page and try again.",
    "enrolment": "The authenticator code is not right, or the set-up took too long.",
    "accounts-off": "Accounts are not enabled on this portal.",
    "account": "This message opens in your account: sign in to read it.",
    "no-account": "This address has no account yet.",
    "reset": "The code from the email or from your authenticator app is not right.",
    "passkey": "The passkey could not be registered; try again.",
    "passkeys-off": "Passkeys need the portal at an address with a name, not a number.",
}


def json_error(problem: Problem) -> JSONResponse:
    body = {"error": problem.error, "message": MESSAGES.get(problem.error, ""), **problem.extra}
    headers = {}
    if problem.status == 429 and problem.extra.get("retry_after"):
        headers["retry-after"] = str(problem.extra["retry_after"])
    return JSONResponse(body, status_code=problem.status, headers=headers)
