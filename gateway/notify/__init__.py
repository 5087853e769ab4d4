"""Notifications: the messages Sealgate sends in its own name.

- :meth:`Notifier.notification`: one per protected recipient, carrying the
  reader's personal link ``PORTAL/m/<link id>#<secret>``. It is the only place
  a link secret is ever written, and it is written only into the message
  handed to the upstream MTA. By default it does not repeat the protected
  subject, and never the content: only the sender's name and address.
- :meth:`Notifier.receipt`, :meth:`Notifier.held_notice`,
  :meth:`Notifier.read_notice`: to the sender.
- :meth:`Notifier.code_email`: a verification code, without a link.
- :meth:`Notifier.secure_reply`: a reader's reply from the portal, as a normal
  message into the sender's mailbox.

Text and HTML come from Jinja2 templates in ``templates/``, one per message,
with their words from the gettext catalogues in ``gateway/locale`` (English
and Dutch; docs/translating.md), branded with the organisation's name, logo
and colour. What the
messages take from the original (:class:`Original`) is cleaned first: a
control character in a display name must not make a notification impossible
to write, or the message would be deferred for ever.
"""

from gateway.notify.notifier import Notifier
from gateway.notify.original import Original, display_name
from gateway.notify.settings import Branding, Settings

__all__ = ["Branding", "Notifier", "Original", "Settings", "display_name"]
