"""Header fields in which a sender instructs Sealgate.

A sender (or the mail client's add-in) may add these to a message:

- ``X-Sealgate-Access-Code`` and ``X-Sealgate-Phone``: second factors for the
  recipients (read in gateway.identity.secondfactor).

They are meant for Sealgate alone: every one of :data:`FIELDS` is removed
from everything that leaves (relayed copies, what is sealed, bounces), by the
pipeline through gateway.mail.outgoing.
"""

from __future__ import annotations

ACCESS_CODE_FIELD = "X-Sealgate-Access-Code"
PHONE_FIELD = "X-Sealgate-Phone"
FIELDS = (ACCESS_CODE_FIELD, PHONE_FIELD)
"""The fields Sealgate itself reads; policy packs list their own (``strip_headers``:
X-Sealgate-Protect). None of them leaves."""
