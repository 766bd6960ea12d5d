"""What the Mechanic's per-coin finishing computes more cheaply, checked against what it
computed before: a coin's holdout figures (``scoring.evaluate``, without the frame) equal
``symbol_metrics``' row, a challenger's copy keeps the champion whole, and a roster read
back is checked once per content."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from huracan.coins import CoinJob
from huracan.costs import symbol_metrics
from huracan.errors import DataError
from huracan.io import plain
from huracan.models import FleetModule, GroupedMoEHead
from huracan.models.encoder import Autoencoder
from huracan.registry.roster import ROSTER_KEY, load_roster, write_roster
from huracan.scoring import evaluate
from huracan.serve.finetune import HeadFit, finetune_heads
from huracan.store import LocalStore


def holdout(rng: np.random.Generator, bars: int) -> dict:
    """A coin's holdout part: hourly bars, returns with a few missing labels, costs."""
    gross = rng.normal(0.001, 0.02, bars)
    gross[rng.choice(bars, 5, replace=False)] = np.nan
    start = pd.Timestamp("2024-01-01", tz="UTC").value
    return {
        "gross": gross,
        "cost_bps": rng.uniform(8, 20, bars),
        "slip_bps": rng.uniform(1, 4, bars),
        "timestamps": start + np.arange(bars, dtype=np.int64) * 3_600_000_000_000,
    }


@pytest.mark.parametrize("seed, bars, horizon", [(0, 170, 4), (1, 40, 1), (2, 300, 12)])
def test_evaluate_gives_the_figures_of_symbol_metrics_row(seed, bars, horizon):
    rng = np.random.default_rng(seed)
    test = holdout(rng, bars)
    job = CoinJob(
        symbol="BTC",
        test=test,
        meta={"test_window": ["a", "b"]},
        rules={"bars_per_year": 8766.0, "horizon": horizon},
    )
    for signals in (rng.uniform(size=bars) > 0.6, np.zeros(bars, bool)):
        net = test["gross"] - test["cost_bps"] / 1e4
        table = symbol_metrics(
            signals[:, None],
            net[:, None],
            test["gross"][:, None],
            symbols=["BTC"],
            timestamps=pd.DatetimeIndex(pd.to_datetime(test["timestamps"], utc=True)),
            bars_per_year=8766.0,
            horizon=horizon,
            cost_bps=test["cost_bps"][:, None],
            slippage_bps=test["slip_bps"][:, None],
        )
        row = {k: plain(v) for k, v in table.iloc[0].items()}
        metrics = evaluate(job, signals)
        assert list(metrics)[: len(row)] == list(row)
        for key, value in row.items():  # exactly, NaN (None) where the row has NaN
            assert metrics[key] == (int(value) if key == "n_trades" else value), key


def test_a_batched_challenger_shares_the_frozen_encoder_and_leaves_the_champion_whole():
    torch.manual_seed(0)
    champion = FleetModule(
        Autoencoder(6, latent_dim=4, hidden=(8,)), GroupedMoEHead(1, 6, n_experts=3, hidden=5)
    ).eval()
    before = {k: v.clone() for k, v in champion.state_dict().items()}
    rng = np.random.default_rng(3)

    def part(n):
        x = torch.tensor(rng.normal(size=(n, 6)), dtype=torch.float32)
        return {
            "x": x,
            "factor": torch.tensor(rng.normal(size=(n, 2)), dtype=torch.float32),
            "y": (x[:, 0] > 0).float(),
            "w": torch.ones(n),
        }

    [challenger] = finetune_heads([HeadFit(champion, part(120), part(30), 1e-2, 32)], 3, 2, 0)
    assert challenger.encoder is champion.encoder and challenger.head is not champion.head
    assert all(torch.equal(v, before[k]) for k, v in champion.state_dict().items())
    moved = [
        k
        for k, v in challenger.head.state_dict().items()
        if not torch.equal(v, before[f"head.{k}"])
    ]
    assert moved and not challenger.finetune_encoder and not challenger.training
    assert not any(p.requires_grad for p in challenger.encoder.parameters())


def test_a_roster_is_checked_once_per_content_and_every_new_content_again(tmp_path):
    store = LocalStore(tmp_path)
    entry = {
        "symbol": "BTC",
        "model_path": "models/BTC/baseline_x",
        "spread_bps": 2.0,
        "fee_bps": 7.5,
        "avg_slip_bps": 1.0,
        "last_7d_net_bps": 3.0,
        "trade_ok": True,
        "reasons": [],
    }
    write_roster(store, [entry], "one")
    assert load_roster(store)["entries"][0]["symbol"] == "BTC"
    assert load_roster(store)["entries"][0]["symbol"] == "BTC"  # the kept verdict
    broken = json.loads(store.read_bytes(ROSTER_KEY))
    broken["entries"][0]["fee_bps"] = -1
    store.write_bytes(ROSTER_KEY, json.dumps(broken, indent=2).encode())
    with pytest.raises(DataError, match="fee_bps"):
        load_roster(store)
    with pytest.raises(DataError, match="spread_bps"):
        write_roster(store, [{**entry, "spread_bps": "wide"}], "two")
