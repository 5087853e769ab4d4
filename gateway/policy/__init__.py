"""Policies: which outgoing mail is relayed, protected, held or refused, per recipient, and why."""
