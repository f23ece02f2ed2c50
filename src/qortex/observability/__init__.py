"""Health checks (and, later, metrics, traces and logs)."""
