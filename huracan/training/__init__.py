"""Machinery the pipelines share: ``arrays`` (the fleet's inputs and labels over all bars),
``folds`` (one fold's fitted clusters, factor, scaler and samples) and ``fit`` (encoder and
head training)."""
