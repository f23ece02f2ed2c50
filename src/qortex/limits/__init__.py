"""Per-tenant rate limits and quotas: plans, their enforcement, and the usage a tenant can read."""
