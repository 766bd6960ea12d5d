"""``pipeline=per_coin``: one model per coin through the job queue. ``run`` builds and queues
the jobs, ``specs`` what each job is given, ``job`` trains, validates and exports one coin,
``costs`` its calibrated costs, ``resume`` what a rerun may reuse, ``importance`` the feature
bank's measure, ``champion_scores`` the champions' figures on the new window, ``report`` the
fleet's tables."""

from huracan.pipelines.per_coin.run import PerCoinPipeline

__all__ = ["PerCoinPipeline"]  # the name configs written before the layout moved
