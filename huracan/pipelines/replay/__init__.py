"""``pipeline=replay``: the live loop (signals, positions, costs, the Mechanic) replayed bar
by bar over history; ``run`` is the loop, ``book`` the positions and trades, ``state`` the
checkpoint and the store it may write, ``report`` the outputs."""

from huracan.pipelines.replay.run import ReplayOptions, ReplayPipeline, run_replay

__all__ = ["ReplayOptions", "ReplayPipeline", "run_replay"]
