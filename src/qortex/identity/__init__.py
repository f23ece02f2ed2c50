"""Identity: API keys (and, later, people and sessions) that resolve to a tenant and a role."""
