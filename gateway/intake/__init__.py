"""The SMTP front door: aiosmtpd's protocol (``server``), who may submit (``access``),
STARTTLS (``tls``), connection limits (``capacity``), the call of the pipeline
(``handler``) and the listeners with their graceful shutdown (``listener``).

Nothing is imported here, so that a light module (``tls`` or ``access`` for
``sealgate check-config`` and ``hash-password``) can be used without the pipeline.
"""
