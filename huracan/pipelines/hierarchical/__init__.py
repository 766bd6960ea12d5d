"""``pipeline=hierarchical``: the fleet run. ``run`` is the fold loop (clusters, factor,
encoder, heads), ``book`` the trades it keeps (``Book``, ``FleetRun``), ``validation`` the
validation-window figures, ``report`` the outputs (results.csv, summary.json, plots)."""

from huracan.pipelines.hierarchical.run import HierarchicalPipeline

__all__ = ["HierarchicalPipeline"]  # the name configs written before the layout moved
