"""Per-asset features, their scaling, and the labels and weights they are trained on."""
