"""Predictions: inputs, the engine's answers, and their history."""
