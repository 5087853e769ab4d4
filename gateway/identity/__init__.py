"""Who a reader is and how they prove it: second factors (and, later, accounts)."""
