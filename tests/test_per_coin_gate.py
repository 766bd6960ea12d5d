"""A per-coin model chooses its horizon and cut under the run's whole rule (the family gate
over its search, ``huracan.coin_rule``); a job stored before that rule chooses as it did."""

from __future__ import annotations

import zlib
from types import SimpleNamespace

import numpy as np
import torch
from conftest import ROOT
from omegaconf import OmegaConf

import huracan.pipelines.mechanic.coin as mechanic_coin
from huracan.coin_rule import cut_rule
from huracan.coins import CoinJob, grid_rows
from huracan.pipelines.per_coin.job import choose_horizon
from huracan.thresholds import choose_horizons, validation_days

HOUR = 3_600_000_000_000
N = 24 * 90  # 90 days of hourly validation bars
THRESHOLDS = OmegaConf.merge(
    OmegaConf.load(ROOT / "huracan" / "conf" / "config.yaml").thresholds,
    {"min_trades": 20},
)


def _job(prob: np.ndarray, gross: np.ndarray, gate: str | None = "family") -> CoinJob:
    """A coin's job at no cost; ``gate`` None: a job stored before ``cut_rule``."""
    meta = {}
    if gate is not None:
        rule = cut_rule(OmegaConf.merge(THRESHOLDS, {"gate": gate}), 7, "X")
        meta = {"cut_rule": rule}
    return CoinJob(
        symbol="X",
        val={
            "gross": gross,
            "cost_bps": np.zeros(len(gross)),
            "timestamps": np.arange(len(gross), dtype=np.int64) * HOUR,
        },
        rules={
            "horizon": 1,
            "horizons": [1, 4],
            "min_trades": 20,
            "z": 2.0,
            "cut_z": 1.0,
            "threshold_unit": "day",
            "bars_per_year": 24 * 365.25,
        },
        meta=meta,
    )


def _noise(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities unrelated to the returns (seed 0: the uncorrected search finds a cut)."""
    rng = np.random.default_rng(seed)
    return rng.random((N, 2)), rng.normal(0, 0.01, (N, 2))


def test_noise_the_uncorrected_search_opens_the_family_gate_shuts():
    prob, gross = _noise()
    index, cut = choose_horizon(_job(prob, gross, "search"), prob)
    assert np.isfinite(cut)  # a champion made of noise, the rule before
    index, cut = choose_horizon(_job(prob, gross, "family"), prob)
    assert (index, cut) == (0, np.inf)


def test_a_planted_edge_still_trades_under_the_family_gate():
    rng = np.random.default_rng(1)
    signal = rng.random(N) < 0.2
    gross = rng.normal(0, 0.01, (N, 2))
    gross[:, 1] += np.where(signal, 0.01, 0.0)  # +100 bps over 4 bars when signalled
    prob = np.column_stack([rng.random(N), np.where(signal, 0.9, 0.1) + rng.normal(0, 0.01, N)])
    index, cut = choose_horizon(_job(prob, gross), prob)
    assert index == 1 and 0.1 < cut <= 0.9


def test_the_choice_repeats_bit_for_bit_and_each_coin_draws_its_own_stream():
    rng = np.random.default_rng(2)
    signal = rng.random(N) < 0.2
    gross = rng.normal(0, 0.01, (N, 2))
    gross[:, 0] += np.where(signal, 0.004, 0.0)  # an edge near the gate: resampling decides
    prob = np.column_stack([np.where(signal, 0.8, 0.2) + rng.normal(0, 0.05, N), rng.random(N)])
    first = choose_horizon(_job(prob, gross), prob)
    assert choose_horizon(_job(prob, gross), prob) == first
    rule = cut_rule(THRESHOLDS, 7, "X")
    assert rule["seed"] == zlib.crc32(b"7/X") != cut_rule(THRESHOLDS, 7, "Y")["seed"]
    assert rule == cut_rule(THRESHOLDS, 7, "X")


def test_a_job_stored_before_the_gate_chooses_as_before():
    """No ``cut_rule`` in its metadata: the uncorrected search at z over horizons x cuts,
    the same call as before, so the noise that opens it still does."""
    prob, gross = _noise()
    job = _job(prob, gross, gate=None)
    stamps = job.val["timestamps"]
    row = grid_rows(stamps, job.rules["bars_per_year"])
    index, cuts, _ = choose_horizons(
        prob, gross, np.zeros(N, int), row, (1, 4), 1, 20, 2.0, validation_days("day", stamps), 1.0
    )
    chosen = choose_horizon(job, prob)
    assert chosen == (max(int(index[0]), 0), float(cuts[0])) and np.isfinite(chosen[1])
    assert chosen == choose_horizon(_job(prob, gross, "search"), prob)


def test_the_mechanic_re_tunes_a_threshold_by_the_champion_s_own_rule(monkeypatch):
    """A champion with ``cut_rule`` re-tunes under the family gate (noise: no trade); one
    stored before it (no ``cut_rule``) by its run's uncorrected search (the noise opens)."""
    prob, gross = (a[:, 0] for a in _noise(seed=4))  # seed 4: its first horizon opens
    monkeypatch.setattr(mechanic_coin, "predict", lambda module, part: prob)
    module = SimpleNamespace(encoder=torch.nn.Linear(1, 1))
    val = {"gross": gross, "cost_bps": np.zeros(N), "timestamps": np.arange(N) * HOUR}
    market = SimpleNamespace(panel=SimpleNamespace(bars_per_year=24 * 365.25))
    legacy = {"min_trades": 20, "z": 2.0, "unit": "day", "cut_z": 1.0}

    def retuned(description: dict) -> dict:
        model = SimpleNamespace(module=module, symbol="X", horizon=1, config={"thresholds": legacy})
        model.description = description
        return mechanic_coin.choose_threshold(module, model, {"val": val}, market)

    assert retuned({})["threshold"] is not None
    assert retuned({"cut_rule": cut_rule(THRESHOLDS, 7, "X")})["threshold"] is None
