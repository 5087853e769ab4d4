"""Sanitising a message's HTML body before a reader's browser sees it.

The portal shows the HTML in a sandboxed frame without scripts, but the frame
is only the second wall: what we store must already be inert. nh3 (the Rust
ammonia sanitiser, parsing like a browser with html5ever) keeps an allow-list
of formatting tags and attributes and drops everything else. Beyond its
defaults we:

- remove the content of script-like elements (script, style, svg, ...), not
  just their tags, so no code or stylesheet text leaks into the page;
- load nothing remote: ``<img>`` keeps only ``cid:`` sources (RFC 2392, the
  message's own inline parts); http(s), ``data:`` and protocol-relative
  sources are dropped, which also defeats tracking pixels;
- keep links only to http, https and mailto, with ``rel="noopener noreferrer"``;
- keep the ``style`` attribute filtered to properties that cannot take a
  ``url()`` (so no background images), and drop a style outright when it
  contains ``url(``, ``image``, ``expression`` or CSS escapes that could
  spell them.
"""

from __future__ import annotations

import re

import nh3

_TAGS = frozenset(
    {
        "a", "abbr", "address", "b", "big", "blockquote", "br", "caption", "center", "cite",
        "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "figcaption",
        "figure", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd",
        "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike", "strong",
        "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul",
        "var", "wbr",
    }
)  # fmt: skip

# Elements whose text is code, styling or widgets, never readable content.
_DROP_WITH_CONTENT = frozenset(
    {
        "script", "style", "title", "template", "noscript", "svg", "math", "iframe", "object",
        "embed", "applet", "frameset", "noframes", "select", "textarea", "button",
    }
)  # fmt: skip

_TABLE_CELL = {"colspan", "rowspan", "nowrap", "bgcolor", "headers", "scope"}
_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"style", "title", "dir", "lang", "align", "valign", "width", "height"},
    "a": {"href"},
    "img": {"src", "alt", "border", "hspace", "vspace"},
    "font": {"color", "face", "size"},
    "table": {"border", "cellpadding", "cellspacing", "bgcolor", "summary"},
    "tr": {"bgcolor"},
    "td": _TABLE_CELL,
    "th": _TABLE_CELL,
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"value"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "hr": {"size", "noshade"},
}

_SIDES = ("", "-top", "-right", "-bottom", "-left")
# CSS properties that take colours, lengths and keywords, never an image or url().
_STYLE_PROPERTIES = frozenset(
    {
        "color", "background-color", "font", "font-family", "font-size", "font-style",
        "font-variant", "font-weight", "text-align", "text-decoration", "text-indent",
        "text-transform", "letter-spacing", "word-spacing", "white-space", "word-break",
        "word-wrap", "overflow-wrap", "line-height", "vertical-align", "display", "direction",
        "width", "height", "min-width", "max-width", "min-height", "max-height", "float",
        "clear", "list-style-type", "table-layout", "border-collapse", "border-spacing",
        "border-color", "border-style", "border-width", "border-radius", "caption-side",
    }
    | {f"margin{side}" for side in _SIDES}
    | {f"padding{side}" for side in _SIDES}
    | {f"border{side}" for side in _SIDES}
    | {f"border{side}-{what}" for side in _SIDES[1:] for what in ("color", "style", "width")}
)  # fmt: skip

_UNSAFE_STYLE = re.compile(r"url\s*\(|image|expression|@import|behavior|binding|\\", re.I)
_PROPERTY_NAME = re.compile(r"(^|;)(\s*)([A-Za-z-]+)(\s*:)")
_EMPTY_STYLE = re.compile(r' style=""')


def sanitise_html(html: str) -> str:
    """``html`` reduced to inert formatting: no scripts, no remote content, safe links."""
    cleaned = nh3.clean(
        html,
        tags=set(_TAGS),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        attributes=_ATTRIBUTES,
        attribute_filter=_filter_attribute,
        url_schemes={"http", "https", "mailto", "cid"},
        url_relative="deny",
        filter_style_properties=set(_STYLE_PROPERTIES),
        link_rel="noopener noreferrer",
        strip_comments=True,
    )
    return _EMPTY_STYLE.sub("", cleaned)


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Narrow what nh3 allows per attribute: cid-only images, no cid links, plain styles."""
    if attribute == "src":
        return value if value.strip().lower().startswith("cid:") else None
    if attribute == "href":
        return None if value.strip().lower().startswith("cid:") else value
    if attribute == "style":
        if _UNSAFE_STYLE.search(value):
            return None
        # nh3 matches property names case-sensitively; mail clients often write FONT-SIZE.
        return _PROPERTY_NAME.sub(lambda m: m[1] + m[2] + m[3].lower() + m[4], value)
    return value
