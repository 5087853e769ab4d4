"""Mail authentication: a DNSSEC-aware resolver, SPF, DKIM, DMARC and ARC, and DKIM signing."""
