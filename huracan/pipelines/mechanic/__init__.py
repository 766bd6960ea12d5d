"""``pipeline=mechanic``: the live fine-tuning loop. ``run`` is the cycle over the roster,
``coin`` one champion's fine-tune and decision, ``drift`` the feature and cluster drift."""

from huracan.pipelines.mechanic.run import MechanicPipeline

__all__ = ["MechanicPipeline"]  # the name configs written before the layout moved
