"""TLS for the SMTP listener (STARTTLS, RFC 3207)."""

from __future__ import annotations

import ssl

from gateway import config


def server_context(settings: config.TLSServer, source: str = "config") -> ssl.SSLContext | None:
    """The listener's TLS context, or None when no certificate is configured.

    Raises :class:`config.ConfigError` naming the key when the files cannot be used.
    """
    if settings.certificate is None or settings.key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion[settings.min_version.replace(".", "_")]
    try:
        context.load_cert_chain(str(settings.certificate), str(settings.key))
    except (ssl.SSLError, OSError) as error:
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
        raise config.ConfigError(
            source, [f"smtp.tls.certificate/smtp.tls.key: cannot be used: {reason}"]
        ) from None
    return context
