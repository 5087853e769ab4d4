"""Everything that leaves Sealgate for the upstream MTA.

``upstream`` is the SMTP client (pooled connections, replies mapped to 4xx and
5xx); ``loopmarker`` the HMAC marker that says what Sealgate sent; ``ownmail``
the one service that DKIM-signs, marks and sends the mail Sealgate writes
itself (notifications, codes, receipts, bounces, secure replies, releases).
The SMTP server lives apart, in gateway.intake.
"""
