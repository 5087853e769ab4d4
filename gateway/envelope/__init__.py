"""The sealed envelope: content model, sealed format, key wrapping."""
