"""Artifacts of the per-coin pipeline: model versions, champions, roster, feature bank."""
