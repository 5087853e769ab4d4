"""Generated MIME messages for the property tests, and the body helper ``mail()`` shares."""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart

from hypothesis import strategies as st

# Any text set_content() writes back unchanged but for its final line break.
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Zl", "Zp"],
                  exclude_characters="\r\x0b\x0c\x1c\x1d\x1e\x85"),
    max_size=300,
)  # fmt: skip


@dataclass
class Generated:
    raw: bytes
    subject: str
    sender: str  # the From field: "display name <zoe@example.org>"
    text: str | None
    html: str | None
    attachments: list[tuple[str, str, bytes]]  # (filename, content type, bytes), walk order


def set_bodies(
    msg: EmailMessage, text: str | None, html: str | None, *, boundary: str | None = None
) -> None:
    """Give ``msg`` a text/plain body, a text/html one, or both as multipart/alternative
    (with ``boundary``, or one the stdlib picks)."""
    if text is not None:
        msg.set_content(text)
    if html is not None:
        if text is None:
            msg.set_content(html, subtype="html")
        else:
            msg.make_alternative(boundary=boundary)
            msg.add_alternative(html, subtype="html")


@st.composite
def generated_messages(
    draw: st.DrawFn,
    *,
    words: st.SearchStrategy[str],
    html: st.SearchStrategy[str],
    filenames: st.SearchStrategy[str],
    content_types: st.SearchStrategy[str],
    data: st.SearchStrategy[bytes],
    max_levels: int,
    max_files: int,
    max_subject_words: int,
    to: str | None = None,
) -> Generated:
    """A text and/or HTML body inside up to ``max_levels`` nested multipart/mixed parts, with up
    to ``max_files`` attachments spread over the levels; Subject and From made of ``words``."""
    text = draw(st.none() | TEXT)
    html_body = draw(html) if text is None else draw(st.none() | html)
    body = EmailMessage(policy=policy.default)
    set_bodies(body, text, html_body, boundary="=_alternative_=")
    levels = draw(st.integers(0, max_levels))  # how deep multipart/mixed nests around the body
    files = draw(
        st.lists(st.tuples(filenames, content_types, data, st.integers(0, levels)),
                 max_size=max_files)
    )  # fmt: skip
    attachments: list[tuple[str, str, bytes]] = []
    inner: Message = body
    for level in range(levels + 1):
        here = [(name, ctype, payload) for name, ctype, payload, at in files if at == level]
        if level < levels or here:
            outer = MIMEMultipart("mixed", f"=_level{level}_=", policy=policy.default)
            outer.attach(inner)
            for filename, content_type, payload in here:
                part = EmailMessage(policy=policy.default)
                maintype, subtype = content_type.split("/")
                part.set_content(payload, maintype, subtype, filename=filename)
                outer.attach(part)
            attachments += here  # the innermost level's attachments come first in walk order
            inner = outer
    subject = " ".join(draw(st.lists(words, min_size=1, max_size=max_subject_words)))
    name = " ".join(draw(st.lists(words, min_size=1, max_size=3)))
    inner["Subject"] = subject
    inner["From"] = Address(name, addr_spec="zoe@example.org")
    if to is not None:
        inner["To"] = to
    linesep = draw(st.sampled_from(["\n", "\r\n"]))
    raw = inner.as_bytes(policy=policy.default.clone(linesep=linesep))
    return Generated(raw, subject, f"{name} <zoe@example.org>", text, html_body, attachments)
