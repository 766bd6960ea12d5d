"""Pipelines: the hierarchical fleet run, and the per-coin production pipeline."""
