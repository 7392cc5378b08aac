"""Temporal workflows: thin loops around the pure planner in dunning/."""
