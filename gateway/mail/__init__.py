"""Reading mail as it arrived, and the content model: what every layer above may read.

``message`` reads header fields from the raw bytes without re-serialising them;
``instructions`` names the header fields a sender instructs Sealgate with and
reads the expiry asked for; ``outgoing`` removes what must not leave
(instruction fields, subject tags);
``content`` (with ``mimewalk`` and ``sanitize``) turns MIME into the parts that
the policy scans and the sealer seals. Nothing here knows of SMTP, policies or
keys: deciding and sealing both stand on it, neither on the other.
"""
