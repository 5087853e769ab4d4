"""The text of a PDF, page by page, with pypdf.

pypdf is pure Python and trusts the file's structure more than we would like:
a crafted content stream can keep ``extract_text`` busy for minutes inside one
page, and its own decompression caps (75 MB per stream) are the only bound on
memory. That is why this runs in the helper process, where the clock is checked
between pages and a page that never ends is ended by killing the process.
pypdf reports broken files through warnings and its logger; both are silenced
here (the helper logs nothing), so no file's content reaches a log.
"""

from __future__ import annotations

import io
import warnings

from pypdf import PasswordType, PdfReader

from gateway.policy.formats import Budget, Found, Kind, text_of


def read(data: bytes, label: str, budget: Budget, found: Found, kind: Kind) -> None:
    """Add the text of the PDF ``data``; an encrypted one is read if its user password
    is empty (owner-only protection), else noted as encrypted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            kind.encrypted = True
            if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
                found.note(label, "encrypted")
                return
        with text_of(found, label, budget) as pieces:
            for page in reader.pages:
                budget.check_time()
                pieces.add(page.extract_text() + "\n")
