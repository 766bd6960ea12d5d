"""Every baseline with a cut chooses it by the heads' rule (``baselines.rule=heads``): the
family gate over its own search keeps noise out, keeps a planted edge, and repeats bit for
bit; ``baselines.rule=uncorrected`` is the search without the gate (the rule before)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from huracan.baseline_rule import applied_gate, baseline_rules
from huracan.baselines import LEADER_QUANTILES, baseline_trades, leader_search
from huracan.errors import ConfigError
from huracan.family import FamilyGate
from huracan.strong_baselines import BaselineOptions, check_options, cross_section_trades
from huracan.validation import WalkForward

HOUR_NS, DAY_NS = 3_600 * 10**9, 86_400 * 10**9
# the config's defaults (huracan/conf/config.yaml)
THRESHOLDS = {"min_trades": 20, "z": 2.0, "cut_z": 1.0, "unit": "day", "gate": "family"}
THRESHOLDS |= {"cut_margin": "family", "family_alpha": 0.025, "resamples": 200}
LEARNED = ("logistic", "leader_lead_lag")
RANKED = BaselineOptions(extra=["momentum", "reversal"], top_k=3, momentum_days=[7, 28])


def rules(rule: str, timestamps_ns: np.ndarray, seed: int = 0):
    return baseline_rules(OmegaConf.create(THRESHOLDS), rule, timestamps_ns, seed)


def hourly(seed: int, follow: float = 0.0, n_bars: int = 3000, n_assets: int = 6):
    """Hourly returns and (T, N, 1) next-bar net returns at 0 bps (no edge unless alts
    follow the leader's, column 0's, last return by ``follow``), its timestamps and folds."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0, 0.01, (n_bars, n_assets))
    for t in range(1, n_bars):
        returns[t, 1:] += follow * returns[t - 1, 0]
    returns[0] = np.nan
    net = np.full_like(returns, np.nan)
    net[:-1] = returns[1:]
    grid = pd.date_range("2024-01-01", periods=n_bars, freq="1h")
    folds = WalkForward(n_folds=3, horizon=1).split(grid)
    return returns, net[..., None], np.arange(n_bars) * HOUR_NS, folds


def daily(seed: int, n_bars: int = 1500, n_coins: int = 12):
    """Daily log closes of independent coins and (T, N, 2) net returns held 1 and 3 days at
    0 bps (no edge), the timestamps and folds."""
    rng = np.random.default_rng(seed)
    log_close = np.cumsum(rng.normal(0, 0.03, (n_bars, n_coins)), axis=0)
    close = np.exp(log_close)
    net_h = np.full((n_bars, n_coins, 2), np.nan)
    for i, h in enumerate((1, 3)):
        net_h[:-h, :, i] = close[h:] / close[:-h] - 1
    grid = pd.date_range("2020-01-01", periods=n_bars, freq="1D")
    return log_close, net_h, np.arange(n_bars) * DAY_NS, WalkForward(3, horizon=3).split(grid)


def learned(seed: int, rule: str, follow: float = 0.0) -> dict[str, np.ndarray]:
    returns, net_h, stamps, folds = hourly(seed, follow)
    trades = baseline_trades(returns, net_h, (1,), folds, 0, rules=rules(rule, stamps))
    return {name: trades[name][0] for name in LEARNED}


def ranked(seed: int, rule: str) -> dict[str, np.ndarray]:
    log_close, net_h, stamps, folds = daily(seed)
    trades, _ = cross_section_trades(
        log_close, net_h, (1, 3), folds, RANKED, DAY_NS, rules(rule, stamps)
    )
    return {name: signals for name, (signals, _) in trades.items()}


def test_on_no_edge_the_gated_baselines_trade_at_most_as_often_as_uncorrected():
    counts = {rule: {} for rule in ("heads", "uncorrected")}
    for rule, by_name in counts.items():
        for seed in (1, 2, 3):
            for name, signals in (learned(seed, rule) | ranked(seed, rule)).items():
                by_name[name] = by_name.get(name, 0) + int(signals.sum())
    for name, gated in counts["heads"].items():
        assert gated <= counts["uncorrected"][name], name
    # the uncorrected search finds noise to trade; the gated rule far less of it
    assert sum(counts["uncorrected"].values()) > 5 * max(1, sum(counts["heads"].values()))


def test_where_only_the_uncorrected_search_opens_the_gated_baselines_trade_nothing():
    """Seed 0 at 0 bps: the uncorrected search of every one of these baselines finds a cut
    on noise; the family gate over the same search refuses all of them."""
    uncorrected = learned(0, "uncorrected") | ranked(0, "uncorrected")
    gated = learned(0, "heads") | ranked(0, "heads")
    opened = ["logistic", "leader_lead_lag", "momentum_7d", "reversal"]
    for name in opened:
        assert uncorrected[name].sum() > 0, name
        assert not gated[name].any(), name


def test_the_gate_keeps_a_planted_lead():
    """Alts follow the leader's last return: the lead-lag rule's edge survives its search
    and it trades the same bars as without the gate."""
    gated, uncorrected = learned(2, "heads", follow=0.5), learned(2, "uncorrected", follow=0.5)
    assert gated["leader_lead_lag"].sum() > 1000
    np.testing.assert_array_equal(gated["leader_lead_lag"], uncorrected["leader_lead_lag"])


def test_the_gated_baselines_repeat_bit_for_bit():
    first = learned(1, "heads") | ranked(2, "heads")
    again = learned(1, "heads") | ranked(2, "heads")
    assert any(signals.any() for signals in first.values())  # something to repeat
    for name, signals in first.items():
        np.testing.assert_array_equal(signals, again[name], err_msg=name)


def test_each_baseline_has_its_own_seed_the_same_in_every_process():
    """Derived from the run's seed and the baseline's name, never Python's salted hash."""
    code = (
        "from huracan.baseline_rule import Rules; import numpy as np; "
        "r = Rules(None, np.zeros(1), 7); "
        "print([r.named(n).seed for n in ('logistic', 'leader_lead_lag', 'momentum_7d')])"
    )
    seen = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        seen.add(out.stdout.strip())
    assert len(seen) == 1
    seeds = eval(seen.pop())  # noqa: S307 (a list of ints this test printed)
    assert len(set(seeds)) == 3 and 7 not in seeds
    other_run = rules("heads", np.zeros(1), seed=8).named("logistic").seed
    assert other_run != seeds[0]


def test_uncorrected_is_the_rule_with_its_gate_off_and_a_bad_rule_is_one_line():
    gated, plain = rules("heads", np.zeros(1)), rules("uncorrected", np.zeros(1))
    assert gated.thresholds.gate == "family" and plain.thresholds.gate == "search"
    assert {k: v for k, v in plain.thresholds.items() if k != "gate"} == {
        k: v for k, v in THRESHOLDS.items() if k != "gate"
    }
    with pytest.raises(
        ConfigError, match=r"^baselines.rule must be heads or uncorrected, got 'x'$"
    ):
        rules("x", np.zeros(1))
    with pytest.raises(ConfigError, match="baselines.rule"):
        check_options(BaselineOptions(rule="gated"))


def test_the_leader_search_holds_every_quantile_cut_with_its_trades():
    """Each candidate of the leader rule's search is one quantile cut: its sum is the alts'
    net returns on the bars where the leader's return exceeds that cut."""
    returns, net_h, stamps, folds = hourly(3, follow=0.2)
    rows = folds[0].val
    leader, alts = returns[rows, 0], net_h[rows, 1:, 0]
    search, cut_at = leader_search(leader, alts, 20, LEADER_QUANTILES, stamps[rows] // DAY_NS)
    ends = np.flatnonzero(np.isfinite(cut_at))
    assert 30 <= len(ends) <= len(LEADER_QUANTILES)
    for end in ends:
        above = leader > cut_at[end]
        assert above.sum() == end + 1
        assert search.total[end] == pytest.approx(np.nansum(alts[above]))
        assert search.enough[end] == (np.isfinite(alts[above]).sum() >= 20)
    assert not search.enough[np.isnan(cut_at)].any()
    assert search.n_days == len(np.unique(stamps[rows] // DAY_NS))


def test_the_verdict_says_when_the_beaten_baselines_were_gated():
    """A gated baseline is a weaker peer: an edge over it is named as such; an edge over
    the uncorrected search, over a rule whose gate is off (``thresholds.gate=search``) or
    over a baseline without a cut (no gate chose anything) is not."""
    from huracan.pipelines.hierarchical.report import baseline_peer, verdict

    model = {"n_trades": 400, "t_stat": 3.1, "net_bps": 5000.0, "ci_low": 1e-4, "ci_high": 3e-4}
    folds = [{"heads_trading": 2}]
    lines = {}
    cases = {
        "gated": ("logistic", "heads", "family"),
        "gate off": ("logistic", "heads", "search"),
        "uncorrected": ("logistic", "uncorrected", "search"),
        "no cut": ("never_trade", "heads", "family"),
        "long": ("always_long", "heads", "family"),
    }
    for case, (best, rule, gate) in cases.items():
        name, gated = baseline_peer(best, rule, gate)
        assert name.endswith(f"({best}, significant; baselines.rule={rule} (gate={gate}))")
        ahead = {"name": name, "value": "5000.0 vs 0.0 bps", "passed": True, "gated": gated}
        lines[case] = verdict({"all": {"model": model}}, folds, [ahead])
    assert lines["gated"].startswith("a significant edge over baselines gated by the heads' rule")
    for case in ("gate off", "uncorrected", "no cut", "long"):
        assert lines[case].startswith("a significant edge: "), case


def test_the_gate_applied_to_the_baselines_is_the_one_that_ran():
    thresholds = OmegaConf.create(THRESHOLDS)
    assert applied_gate(thresholds, "heads") == "family"
    assert applied_gate(thresholds, "uncorrected") == "search"
    assert applied_gate(OmegaConf.create({"z": 2.0}), "heads") == "search"


def test_a_misspelled_rule_stops_the_run_before_any_work():
    from conftest import ROOT
    from hydra import compose, initialize_config_dir

    from huracan.config import validate

    with initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["baselines.rule=gated"])
    with pytest.raises(ConfigError, match="^baselines.rule must be heads or uncorrected"):
        validate(cfg)


def test_the_leader_search_leaves_bars_without_a_leader_return_out_of_its_null():
    """A bar without a leader return never trades: it is no element of the search, so the
    family gate's shuffles cannot place it among the candidates, and the critical value is
    that of the same bars without it; D still counts every validation day."""
    returns, net_h, stamps, folds = hourly(4)
    rows = folds[0].val
    leader, alts, day = returns[rows, 0].copy(), net_h[rows, 1:, 0], stamps[rows] // DAY_NS
    missing = np.zeros(len(rows), dtype=bool)
    missing[5::7] = True  # every day keeps most of its bars
    leader[missing] = np.nan
    gate = FamilyGate(alpha=0.025, resamples=200, seed=3)
    search, cut_at = leader_search(leader, alts, 20, LEADER_QUANTILES, day)
    kept = ~missing
    dropped, dropped_at = leader_search(leader[kept], alts[kept], 20, LEADER_QUANTILES, day[kept])
    assert len(search.returns) == kept.sum()
    assert search.n_days == dropped.n_days == len(np.unique(day))
    np.testing.assert_array_equal(cut_at, dropped_at)
    assert np.isfinite(gate.critical_z([dropped]))
    assert gate.critical_z([search]) == gate.critical_z([dropped])


def test_uncorrected_turns_the_gate_off_in_a_struct_config_without_the_key():
    """Hydra's configs are struct: the rule without the gate adds ``gate`` to a copy."""
    thresholds = OmegaConf.create({k: v for k, v in THRESHOLDS.items() if k != "gate"})
    OmegaConf.set_struct(thresholds, True)
    plain = baseline_rules(thresholds, "uncorrected", np.zeros(1), 0)
    assert plain.thresholds.gate == "search"
    assert "gate" not in thresholds


def test_a_config_without_thresholds_names_no_gate():
    """A hand-made config without ``thresholds``: no rule of its chose a cut, so the
    best-baseline criterion says so instead of ``gate=search`` and claims no gated peer."""
    from huracan.pipelines.hierarchical.report import baseline_peer
    from huracan.pipelines.per_coin.report import _criteria

    assert applied_gate(None, "heads") is None and applied_gate(None, "uncorrected") is None
    name, gated = baseline_peer("logistic", "heads", None)
    assert name.endswith("baselines.rule=heads (no thresholds: no gate))") and gated is False
    assert "gate=search" not in name
    model = {"net_bps": 50.0, "t_stat": 3.0, "n_trades": 40, "by_day": True}
    daily = {k: pd.Series([1.0, 2.0, 3.0]) for k in ("model", "logistic")}
    table = {"model": model, "logistic": {"net_bps": 10.0, "by_day": True}}
    _, against = _criteria(table, daily, "selection", ("heads", None))
    assert "(no thresholds: no gate)" in against["name"] and against["gated"] is False
    _, gated_row = _criteria(table, daily, "selection", ("heads", "family"))
    assert "(gate=family)" in gated_row["name"] and gated_row["gated"] is True
