"""Models: the prediction models a tenant can use, with their evaluation metrics."""
