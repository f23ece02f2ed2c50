"""Audit: an append-only, hash-chained log of security events per tenant."""
