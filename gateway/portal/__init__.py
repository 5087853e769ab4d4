"""The recipient portal: an ASGI app where protected recipients verify, read and reply.

The server never sees plaintext: it releases the encrypted reader key, the
wrapped content key and the sealed parts to a browser that proved a second
factor, and the browser decrypts them with the secret in the link's fragment
(docs/envelope-format.md). Secure replies arrive encrypted to the
organisation's reply key and leave as normal mail to the original sender.
"""
