"""Sealgate: a self-hosted secure email gateway."""

__version__ = "0.1.0"
