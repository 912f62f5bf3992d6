"""The costctx benchmark (see run.py)."""
