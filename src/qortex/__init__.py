"""Qortex: a self-hosted, multi-tenant prediction platform."""

__version__ = "0.1.0"
