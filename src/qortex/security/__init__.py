"""Credentials, roles and permissions."""
