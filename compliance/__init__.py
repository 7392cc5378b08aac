"""Compliance review tools that run outside the workflow (the template lint)."""
