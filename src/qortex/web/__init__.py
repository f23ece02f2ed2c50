"""HTTP plumbing shared by every router: middleware, problem responses, strict JSON, dependencies."""
