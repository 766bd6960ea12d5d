"""Stronger baselines (issue 26): LightGBM on the heads' features, cross-sectional
momentum and short-term reversal.

Each one, like ``huracan.baselines``' logistic regression, is fitted on its fold's
training rows, has its horizon and cut chosen together on the fold's validation rows by
the heads' rule (``huracan.baseline_rule``). Under ``thresholds.cut_margin=family`` (the
default) a cut trades only where its validation profit less the family gate's critical
value of daily standard errors is positive, of those the best by ``thresholds.cut_z``;
under ``cut_margin=z`` the family's critical value only opens the gate (whether the fold
trades at all), and an open gate takes the best candidate at ``thresholds.z``, the cut
the uncorrected search takes; ``baselines.rule=uncorrected``: that candidate, no gate.
Each trades only on the fold's test rows. All coins are pooled into one group, so one
horizon and one cut per fold.

- ``lightgbm``: one LightGBM classifier per fold and horizon of "a long entered at the
  close of t makes money after costs, held that horizon", on the technical features and
  the fold's FFD log price, scaled per asset by a scaler fitted on the training rows (the
  heads' inputs, without the market-factor channels). Deterministic: one thread, seeded.
- ``momentum_<d>d``: at each bar, the ``top_k`` coins by their return over the last ``d``
  days (one baseline per entry of ``momentum_days``); long those whose return is at least
  the fold's cut.
- ``reversal``: the ``top_k`` coins by minus their return over the last
  ``reversal_days`` (the biggest losers), long those at least the cut.

Look-backs are given in days and counted in bars of the panel's timeframe. Every score at
bar t reads closes up to t only, and a trade is entered at the close of t.

Just over 300 lines: the three share one pooled validation rule (``pooled_choice``) and one
config section, and splitting them would split those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import lightgbm
import numpy as np
from omegaconf import DictConfig, OmegaConf

from huracan.baseline_rule import Rules, check_rule
from huracan.errors import ConfigError
from huracan.features.fracdiff import for_features
from huracan.features.scaling import PanelScaler
from huracan.features.technical import lag
from huracan.thresholds import DAY_NS
from huracan.training.arrays import labels_of
from huracan.validation import Fold

if TYPE_CHECKING:  # fold_data imports this module
    from huracan.training.arrays import FleetArrays

EXTRA = ("lightgbm", "momentum", "reversal")
LIGHTGBM_FIXED = {  # what makes a fit repeatable bit for bit; not configurable
    "objective": "binary",
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbose": -1,
}


@dataclass
class BaselineOptions:
    """The ``baselines`` config section.

    Attributes:
        extra: the stronger baselines to run beside the four plain ones, from ``EXTRA``.
        top_k: coins momentum and reversal may hold at one bar.
        momentum_days: look-backs of the momentum baselines, one baseline each.
        reversal_days: look-back of the reversal baseline.
        lightgbm: LightGBM parameters; ``num_boost_round`` is the number of trees.
        rule: how every baseline with a cut chooses it (``huracan.baseline_rule``):
            ``heads`` or ``uncorrected``.
    """

    extra: list[str] = field(default_factory=list)
    top_k: int = 5
    momentum_days: list[float] = field(default_factory=lambda: [7, 28])
    reversal_days: float = 1
    lightgbm: dict = field(default_factory=dict)
    rule: str = "heads"


def check_options(options: BaselineOptions) -> None:
    unknown = sorted(set(options.extra) - set(EXTRA))
    if unknown:
        raise ConfigError(f"baselines.extra: unknown {unknown}; choose from {list(EXTRA)}")
    check_rule(options.rule)
    if options.top_k < 1:
        raise ConfigError(f"baselines.top_k must be >= 1, got {options.top_k}")
    for days in [*options.momentum_days, options.reversal_days]:
        if not days > 0:
            raise ConfigError(f"baselines look-backs must be > 0 days, got {days}")


def lookback_bars(days: float, bar_ns: float) -> int:
    """Bars in ``days`` days of bars ``bar_ns`` long (at least one)."""
    return max(1, round(days * DAY_NS / bar_ns))


def lookback_return(log_close: np.ndarray, bars: int) -> np.ndarray:
    """(T, N) log return over the last ``bars`` bars, known at the close of t."""
    return log_close - lag(log_close, bars)


def top_k_mask(score: np.ndarray, k: int) -> np.ndarray:
    """(T, N) True for the ``k`` largest finite scores of each row (ties: lower column)."""
    finite = np.isfinite(score)
    order = np.argsort(np.where(finite, -score, np.inf), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(score.shape[1])[None, :], axis=1)
    return finite & (rank < k)


def pooled_choice(
    prob: np.ndarray, net_h: np.ndarray, rows: np.ndarray, horizons: tuple[int, ...], rules: Rules
) -> tuple[int, float]:
    """One horizon index and cut for all coins pooled, by ``rules`` (one group: one family
    gate over the pooled search).

    Args:
        prob: (V, N, H) validation scores per horizon (NaN: no candidate trade).
        net_h: (V, N, H) their net returns; rows: (V,) their grid rows.

    Returns:
        ``(horizon_index, cut)``; ``(-1, inf)`` where no cut passes the rule. A horizon
        without any score (e.g. no model fitted for it) is left out of the choice, not
        allowed to veto the others.
    """
    scored = np.flatnonzero(np.isfinite(prob).any((0, 1)))
    if len(scored) == 0:
        return -1, np.inf
    prob, net_h = prob[..., scored], net_h[..., scored]
    t, coins = np.nonzero(np.isfinite(prob).all(-1))
    index, cuts, _ = rules.choose(
        prob[t, coins],
        net_h[t, coins],
        np.zeros(len(t), dtype=np.int64),
        rows[t],
        tuple(horizons[i] for i in scored),
        1,
    )
    return (int(scored[index[0]]), float(cuts[0])) if index[0] >= 0 else (-1, float(cuts[0]))


def ranked_trades(
    score: np.ndarray,
    net_h: np.ndarray,
    horizons: tuple[int, ...],
    folds: Sequence[Fold],
    top_k: int,
    rules: Rules,
) -> tuple[np.ndarray, np.ndarray]:
    """Long the ``top_k`` coins by ``score`` at each test bar where their score is at
    least the fold's cut, held the fold's horizon; both chosen on validation by ``rules``
    (already :meth:`~huracan.baseline_rule.Rules.named` for the baseline).

    Returns:
        ``(signals, horizon_index)``, each (T, N); index -1 where no trade.
    """
    ranked = np.where(top_k_mask(score, top_k), score, np.nan)
    signals = np.zeros(score.shape, dtype=bool)
    index = np.full(score.shape, -1)
    for fold in folds:
        val = np.repeat(ranked[fold.val][..., None], len(horizons), axis=-1)
        chosen, cut = pooled_choice(val, net_h[fold.val], fold.val, horizons, rules)
        if chosen < 0:
            continue
        with np.errstate(invalid="ignore"):
            trade = ranked[fold.test] >= cut  # NaN (not in the top k): no trade
        signals[fold.test] = trade
        index[fold.test] = np.where(trade, chosen, -1)
    return signals, index


def test_only(score: np.ndarray, folds: Sequence[Fold]) -> np.ndarray:
    """``score`` (T, N) as float32 on the folds' test rows, NaN elsewhere."""
    out = np.full(score.shape, np.nan, dtype=np.float32)
    for fold in folds:
        out[fold.test] = score[fold.test]
    return out


def lightgbm_trades(
    fold_features: Callable[[Fold], np.ndarray],
    label_h: np.ndarray,
    net_h: np.ndarray,
    horizons: tuple[int, ...],
    folds: Sequence[Fold],
    rules: Rules,
    params: dict,
    seed: int,
    clip: float | None = 5.0,
    validation: dict[int, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per fold, one LightGBM classifier per horizon on the training rows; horizon and
    probability cut chosen on validation; long where the test probability is at least it.

    Args:
        fold_features: the fold's (T, N, F) inputs, unscaled (what the fold may fit is
            fitted on its training rows only, e.g. the FFD order).
        label_h: (T, N, H) 1 where a long held ``horizons[i]`` nets a profit, 0 where not,
            NaN where there is no trade; net_h: (T, N, H) that net return.
        params: LightGBM parameters; ``num_boost_round`` (default 200) is the trees.
        rules: the rule choosing horizon and cut (its gate seeded for ``lightgbm``).
        seed: the fold's LightGBM seed is ``seed + fold.index``.
        clip: scaled inputs are clipped to +- this (``features.clip``).
        validation: where given, each fold's (V, N, H) float32 validation probabilities
            (over ``fold.val``, NaN where none) are stored under its index: what
            ``ensemble=stack`` stacks (fitted on the training rows only, like the rest).

    Returns:
        ``(signals, horizon_index, probability)``: (T, N), (T, N) and (H, T, N) float32,
        the probability on test rows only (NaN elsewhere).
    """
    params, rules = dict(params), rules.named("lightgbm")
    rounds = int(params.pop("num_boost_round", 200))
    shape = label_h.shape[:2]
    signals, index = np.zeros(shape, dtype=bool), np.full(shape, -1)
    probability = np.full((len(horizons), *shape), np.nan, dtype=np.float32)
    for fold in folds:
        features = fold_features(fold)
        scaler = PanelScaler(clip=clip).fit(features[fold.train])
        train_t, train_a, x_train = scaled_rows(features, scaler, fold.train)
        val_t, val_a, x_val = scaled_rows(features, scaler, fold.val)
        test_t, test_a, x_test = scaled_rows(features, scaler, fold.test)
        val_prob = np.full((len(fold.val), shape[1], len(horizons)), np.nan)
        test_prob = np.full((len(test_t), len(horizons)), np.nan)
        for i in range(len(horizons)):
            y = label_h[train_t, train_a, i]
            fit = np.isfinite(y)
            if len(np.unique(y[fit])) < 2:
                continue  # one class only: no model, no trade at this horizon
            data = lightgbm.Dataset(x_train[fit], y[fit], free_raw_data=True)
            options = {**params, **LIGHTGBM_FIXED, "seed": seed + fold.index}
            booster = lightgbm.train(options, data, num_boost_round=rounds)
            val_prob[np.searchsorted(fold.val, val_t), val_a, i] = booster.predict(x_val)
            test_prob[:, i] = booster.predict(x_test)
        chosen, cut = pooled_choice(val_prob, net_h[fold.val], fold.val, horizons, rules)
        if validation is not None:
            validation[fold.index] = val_prob.astype(np.float32)
        probability[:, test_t, test_a] = test_prob.T
        if chosen >= 0:
            trade = test_prob[:, chosen] >= cut
            signals[test_t, test_a] = trade
            index[test_t, test_a] = np.where(trade, chosen, -1)
    return signals, index, probability


def scaled_rows(
    features: np.ndarray, scaler: PanelScaler, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid row, asset and (B, F) scaled inputs of every cell of ``rows`` whose
    inputs are all known (the cells the heads learn from and predict)."""
    t, a = np.nonzero(np.isfinite(features[rows]).all(-1))
    return rows[t], a, scaler.transform_rows(features[rows[t], a], a)


def cross_section_trades(
    log_close: np.ndarray,
    net_h: np.ndarray,
    horizons: tuple[int, ...],
    folds: Sequence[Fold],
    options: BaselineOptions,
    bar_ns: float,
    rules: Rules,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """The momentum and reversal baselines asked for in ``options.extra``.

    Returns:
        Per baseline ``(signals, horizon_index)``, and its (T, N) float32 score on the test
        rows (the look-back return; for reversal minus it), NaN elsewhere.
    """
    scores = {}
    if "momentum" in options.extra:
        for days in options.momentum_days:
            name = f"momentum_{days:g}d"
            scores[name] = lookback_return(log_close, lookback_bars(days, bar_ns))
    if "reversal" in options.extra:
        bars = lookback_bars(options.reversal_days, bar_ns)
        scores["reversal"] = -lookback_return(log_close, bars)
    trades = {
        name: ranked_trades(score, net_h, horizons, folds, options.top_k, rules.named(name))
        for name, score in scores.items()
    }
    return trades, {name: test_only(score, folds) for name, score in scores.items()}


def bar_length_ns(timestamps_ns: np.ndarray) -> float:
    """The grid's bar length (its most common spacing; one day for a single bar)."""
    if len(timestamps_ns) < 2:
        return float(DAY_NS)
    steps, counts = np.unique(np.diff(timestamps_ns), return_counts=True)
    return float(steps[counts.argmax()])


def baseline_options(cfg: DictConfig) -> BaselineOptions:
    """The run's ``baselines`` section (its defaults where a config has none)."""
    node = cfg.get("baselines")
    values = {} if node is None else OmegaConf.to_container(node, resolve=True)
    options = BaselineOptions(**values)
    check_options(options)
    return options


def fold_inputs(arrays: FleetArrays, cfg: DictConfig, fold: Fold) -> np.ndarray:
    """(T, N, F) the heads' unscaled inputs for ``fold``: the technical features and, with
    ``features.fracdiff``, the FFD log price, its order fitted on the training rows."""
    if not cfg.features.fracdiff:
        return arrays.features
    fracdiff = for_features(cfg.features, arrays.bar_seconds).fit(arrays.log_close[fold.train])
    ffd = fracdiff.transform(arrays.log_close).astype(np.float32)
    return np.concatenate([arrays.features, ffd[..., None]], axis=-1)


def extra_baselines(
    arrays: FleetArrays,
    folds: Sequence[Fold],
    cfg: DictConfig,
    rules: Rules,
    validation: dict[str, dict[int, np.ndarray]] | None = None,
    net_h: np.ndarray | None = None,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """The baselines of ``baselines.extra``: per baseline ``(signals, horizon_index)``,
    and its score (H, T, N) on the test rows, NaN elsewhere (a score without a horizon,
    momentum's and reversal's, is a read-only view repeated over the horizons).
    ``validation``, where given, receives LightGBM's per-fold validation probabilities
    under ``lightgbm`` (``lightgbm_trades``). ``net_h``: ``arrays.net_h`` where the caller
    has derived it already (one (T, N, H) grid for the labels and every baseline)."""
    options = baseline_options(cfg)
    net_h = arrays.net_h if net_h is None else net_h
    trades: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    scores: dict[str, np.ndarray] = {}
    if "lightgbm" in options.extra:
        *lgbm, scores["lightgbm"] = lightgbm_trades(
            partial(fold_inputs, arrays, cfg),
            labels_of(net_h),
            net_h,
            arrays.horizons,
            folds,
            rules,
            options.lightgbm,
            cfg.seed,
            cfg.features.clip,
            None if validation is None else validation.setdefault("lightgbm", {}),
        )
        trades["lightgbm"] = tuple(lgbm)
    ranked, ranked_scores = cross_section_trades(
        arrays.log_close,
        net_h,
        arrays.horizons,
        folds,
        options,
        bar_length_ns(arrays.timestamps_ns),
        rules,
    )
    trades |= ranked
    shape = (len(arrays.horizons), *arrays.log_close.shape)
    scores |= {name: np.broadcast_to(score, shape) for name, score in ranked_scores.items()}
    return trades, scores
