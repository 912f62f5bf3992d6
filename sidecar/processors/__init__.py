"""Trace processors: each takes a TraceBatch and returns it (or what it does not hold)."""
