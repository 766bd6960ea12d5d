"""``pipeline=hierarchical``: the fleet run. ``run`` is the fold loop (clusters, factor,
encoder, heads), ``book`` the trades it keeps (``Book``, ``FleetRun``), ``validation`` the
validation-window figures, ``report`` the outputs (results.csv, summary.json, plots)."""
