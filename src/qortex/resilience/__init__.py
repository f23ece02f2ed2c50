"""Keeping the service responsive under load: batching, back-pressure."""
