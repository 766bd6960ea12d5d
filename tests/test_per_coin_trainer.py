"""The per-coin jobs train with the run's own trainer config, also with heads=alone."""

from __future__ import annotations

import pytest
from test_per_coin import per_coin_config

from huracan.run import train


@pytest.mark.parametrize("shown", [True, False])
def test_heads_alone_jobs_use_the_configured_trainer(tmp_path, capfd, shown):
    """With ``trainer.enable_model_summary=true`` every fit made with the configured
    trainer logs a model summary, so each coin's own head fit logs one; with ``false``
    (the default, and not Lightning's) none does."""
    option = f"trainer.enable_model_summary={str(shown).lower()}"
    cfg = per_coin_config(tmp_path, "pipeline.heads=alone", option, "queue.workers=1")
    summary, _ = train(cfg)
    out, err = capfd.readouterr()
    jobs = summary["per_coin"]["jobs"]
    trained = [s for s, job in jobs.items() if job.get("status") != "skipped"]
    summaries = (out + err).count("Trainable params")
    # the shared encoder once, then one head per trained coin
    assert len(trained) >= 2
    if shown:
        assert summaries >= 1 + len(trained), (summaries, trained)
    else:
        assert summaries == 0
