"""The family-wise gate: the error rate it promises on noise, and the edges it keeps."""

import numpy as np
import pytest

from huracan.errors import ConfigError
from huracan.family import FamilyGate
from huracan.thresholds import choose_horizons, head_searches

HORIZONS = (1, 4)


def head_folds(n_heads: int, edge: float, seed: int, n_days: int = 30, per_day: int = 24):
    """``n_heads`` heads' validation samples, each with its own days of fat-tailed, mean-zero
    market moves; a sample earns ``edge * (prob - 0.5)`` more where there is an edge."""
    rng = np.random.default_rng(seed)
    rows = np.tile(np.arange(n_days * per_day), n_heads)
    group = np.repeat(np.arange(n_heads), n_days * per_day)
    day = rows // per_day
    prob = rng.uniform(0, 1, (len(rows), len(HORIZONS)))
    vol = 0.005 * np.repeat(rng.choice([1.0, 2.0], (n_heads, n_days)), per_day, axis=1).ravel()
    move = rng.standard_t(4, (len(rows), len(HORIZONS))) * vol[:, None] / np.sqrt(2)
    move[:, 1] *= 2  # the longer horizon moves more
    net = move + edge * (prob - 0.5)
    return prob, net, group, rows, day


def trading(prob, net, group, rows, day, n_heads, family):
    index, _, _ = choose_horizons(
        prob, net, group, rows, HORIZONS, n_heads, 20, 2.0, day, 1.0, family
    )
    return index >= 0


def test_on_noise_the_family_gate_keeps_its_rate_and_the_uncorrected_search_does_not():
    n_heads = 200
    data = head_folds(n_heads, edge=0.0, seed=0)
    family = trading(*data, n_heads, FamilyGate(alpha=0.05, resamples=200))
    search = trading(*data, n_heads, None)
    assert family.mean() <= 0.08  # 5 % family-wise, with room for 200 heads' sampling error
    assert search.mean() >= 0.2  # the best of ~1,400 cuts at z = 2: noise trades


def test_the_family_gate_keeps_an_edge_that_survives_the_search():
    n_heads = 10
    data = head_folds(n_heads, edge=0.01, seed=1)
    assert trading(*data, n_heads, FamilyGate(alpha=0.05, resamples=200)).all()


def test_the_critical_value_grows_with_the_search_and_never_drops_below_z():
    prob, net, group, rows, day = head_folds(1, edge=0.0, seed=2)
    gate = FamilyGate(alpha=0.05, resamples=200)
    searches = [head_searches(prob[:, i], net[:, i], group, 1, 20, day)[0][0] for i in (0, 1)]
    q_one, q_both = gate.critical_z(searches[:1]), gate.critical_z(searches)
    assert 2.0 < q_one <= q_both  # more candidates, a wider margin


def test_every_resampled_day_weighs_one_on_average_and_blocks_keep_the_hold():
    gate = FamilyGate(resamples=4000, hold_days=5)
    weights = gate.day_weights(23, np.random.default_rng(0))
    assert weights.shape == (4000, 23)
    np.testing.assert_allclose(weights.sum(1), 23)
    np.testing.assert_allclose(weights.mean(0), 1.0, atol=0.05)


def test_the_family_gate_needs_daily_evidence_and_sane_settings():
    prob, net, group, rows, day = head_folds(1, edge=0.0, seed=3)
    with pytest.raises(ConfigError, match="needs thresholds.unit=day"):
        choose_horizons(prob, net, group, rows, HORIZONS, 1, 20, 2.0, None, 1.0, FamilyGate())
    with pytest.raises(ConfigError, match="family_alpha"):
        FamilyGate(alpha=0.0)


@pytest.mark.parametrize("edge", [0.0, 0.004, 0.01])
def test_cut_margin_z_opens_the_same_gates_and_takes_at_least_the_profit(edge):
    """thresholds.cut_margin=z: the family's critical value decides which heads trade
    (exactly the same ones), then the cut whose bound at z is positive with the best score;
    its validation profit is never below the family-margin cut's."""
    n_heads = 30
    prob, net, group, rows, day = head_folds(n_heads, edge=edge, seed=3)
    args = (prob, net, group, rows, HORIZONS, n_heads, 20, 2.0, day, 0.0)
    gate = FamilyGate(alpha=0.05, resamples=200)
    family = choose_horizons(*args, gate, "family")
    at_z = choose_horizons(*args, gate, "z")
    np.testing.assert_array_equal(family[0] >= 0, at_z[0] >= 0)

    def profit(index, cuts, g):
        i = index[g]
        keep = (group == g) & (rows % HORIZONS[i] == 0) & (prob[:, i] >= cuts[g])
        return net[keep, i].sum()

    for g in np.flatnonzero(family[0] >= 0):
        assert profit(at_z[0], at_z[1], g) >= profit(family[0], family[1], g) - 1e-12
    if edge == 0.01:
        assert (at_z[1] <= family[1]).mean() > 0.5  # an open gate trades more of its edge
    if edge == 0.004:  # a modest edge: some open heads take another cut, with more profit
        moved = [g for g in np.flatnonzero(family[0] >= 0) if at_z[1][g] != family[1][g]]
        assert moved
        assert all(profit(at_z[0], at_z[1], g) > profit(family[0], family[1], g) for g in moved)


def test_an_unknown_cut_margin_is_refused():
    prob, net, group, rows, day = head_folds(1, edge=0.0, seed=0)
    with pytest.raises(ConfigError, match="thresholds.cut_margin"):
        choose_horizons(prob, net, group, rows, HORIZONS, 1, 20, 2.0, day, 1.0, None, "wide")


def test_the_gates_null_is_the_same_for_any_chunk(monkeypatch):
    """family.CHUNK only bounds the resamples held at once: the shuffled and bootstrapped
    maxima are bit for bit those of one large chunk (the gate's figures do not move)."""
    import huracan.family as family

    rng = np.random.default_rng(0)
    n = 3000
    day = rng.integers(0, 40, n)
    net = rng.normal(0, 0.01, n)
    ((search, _),) = head_searches(rng.random(n), net, np.zeros(n, int), 1, 20, day)
    weights = rng.random((60, 40)) * 2
    results = []
    for chunk in (10**7, family.CHUNK, 4_000):  # all resamples at once, the default, 1 row
        monkeypatch.setattr(family, "CHUNK", chunk)
        shuffled = family.shuffled_max_t(search, 60, np.random.default_rng([0, 1, 0]))
        results.append((shuffled, family.max_t(search, weights, 0)))
    for shuffled, bootstrapped in results[1:]:
        np.testing.assert_array_equal(shuffled, results[0][0])
        np.testing.assert_array_equal(bootstrapped, results[0][1])


def test_the_runs_rule_carries_its_cut_margin():
    """``choose_by_rule`` (what the heads and the ensemble call) applies the config's whole
    rule, the cut margin included: with ``cut_margin=z`` it takes the cuts
    ``choose_horizons(..., "z")`` takes, which differ from the family margin's here."""
    from omegaconf import OmegaConf

    from huracan.thresholds import choose_by_rule

    n_heads = 30
    prob, net, group, rows, day = head_folds(n_heads, edge=0.004, seed=3)
    stamps = rows.max() + 1
    timestamps_ns = np.arange(stamps, dtype=np.int64) * (86_400_000_000_000 // 24)
    rule = dict(min_trades=20, z=2.0, unit="day", cut_z=0.0, gate="family")
    rule.update(family_alpha=0.05, resamples=200)
    chosen = {}
    for margin in ("family", "z"):
        thresholds = OmegaConf.create({**rule, "cut_margin": margin})
        args = (prob, net, group, rows, HORIZONS, n_heads, timestamps_ns)
        chosen[margin] = choose_by_rule(thresholds, *args, 0)
        gate = FamilyGate(alpha=0.05, resamples=200, hold_days=1, seed=0)
        direct = choose_horizons(
            prob, net, group, rows, HORIZONS, n_heads, 20, 2.0, day, 0.0, gate, margin
        )
        np.testing.assert_array_equal(chosen[margin][1], direct[1])
    assert (chosen["z"][1] != chosen["family"][1]).any()


def _day_before_by_rows(returns: np.ndarray, day: np.ndarray) -> np.ndarray:
    """The computation ``family.day_before`` replaced: every row sorted by day, gathered
    and scattered with take_along_axis and put_along_axis, each row's day starts found
    on its own."""
    by_day = np.argsort(day, axis=1, kind="stable")
    ordered = np.take_along_axis(returns, by_day, axis=1)
    grouped = np.take_along_axis(day, by_day, axis=1)
    running = np.cumsum(ordered, axis=1)
    first = np.ones_like(grouped, dtype=bool)
    first[:, 1:] = grouped[:, 1:] != grouped[:, :-1]
    index = np.broadcast_to(np.arange(returns.shape[1]), returns.shape)
    start = np.maximum.accumulate(np.where(first, index, 0), axis=1)
    before_sorted = running - ordered - np.take_along_axis(running - ordered, start, axis=1)
    before = np.empty_like(returns)
    np.put_along_axis(before, by_day, before_sorted, axis=1)
    return before


@pytest.mark.parametrize("n, n_days", [(1, 1), (7, 1), (300, 4), (2000, 60)])
def test_day_before_is_the_per_row_sort_it_replaces(n, n_days):
    """Bit for bit, on shuffles laid out as the gate draws them (column-major) and
    row-major."""
    import huracan.family as family

    rng = np.random.default_rng(n)
    returns, day = rng.normal(0, 0.01, n), rng.integers(0, n_days, n).astype(np.int16)
    order = rng.permuted(np.broadcast_to(np.arange(n), (23, n)), axis=1)
    for drawn in (order, np.ascontiguousarray(order)):
        want = _day_before_by_rows(returns[drawn], day[drawn])
        np.testing.assert_array_equal(family.day_before(returns[drawn], day[drawn]), want)
        runs = family.day_runs(day)  # found once, as the gate passes them to every chunk
        np.testing.assert_array_equal(family.day_before(returns[drawn], day[drawn], runs), want)


@pytest.mark.parametrize("method", ["family", "permutation", "bootstrap"])
@pytest.mark.parametrize("edge", [0.0, 0.004, 0.01])
def test_the_gates_shortcuts_choose_what_the_full_critical_values_choose(method, edge):
    """choose_horizons skips a head with no candidate at z and stops resampling where the
    critical value is known to exceed the head's best t: its horizons, cuts and bounds are
    those chosen with every head's exact critical value (computed in full here)."""
    from huracan.thresholds import _best_over_horizons, largest_t

    n_heads = 24
    prob, net, group, rows, day = head_folds(n_heads, edge=edge, seed=4)
    gate = FamilyGate(alpha=0.05, resamples=100, method=method)
    searches = [
        head_searches(prob[rows % h == 0, i], net[rows % h == 0, i], group[rows % h == 0],
                      n_heads, 20, day[rows % h == 0])
        for i, h in enumerate(HORIZONS)
    ]  # fmt: skip
    margin, stopped = np.full(n_heads, 2.0), 0
    for g in range(n_heads):
        found = [entry[g][0] for entry in searches]
        exact = gate.critical_z(found, head=g)
        margin[g] = max(2.0, exact)
        shortcut = gate.critical_z(found, head=g, observed=largest_t(found))
        assert shortcut == exact or (shortcut == np.inf and exact > largest_t(found))
        stopped += shortcut != exact
    want = _best_over_horizons(searches, n_heads, margin, 1.0)
    got = choose_horizons(prob, net, group, rows, HORIZONS, n_heads, 20, 2.0, day, 1.0, gate)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    if edge == 0.0:
        assert stopped > 0  # on noise the shortcut is taken
    if edge == 0.01:
        assert (got[0] >= 0).all()  # and an edge still trades


def test_a_group_that_clears_no_candidate_at_z_is_not_resampled(monkeypatch):
    """Its family margin (never below z) could open nothing: the gate skips its resampling,
    and every group's choice is the one with each margin computed."""
    from huracan.thresholds import _best_over_horizons, choose_among, horizon_searches

    n_heads = 40
    prob, net, group, rows, day = head_folds(n_heads, edge=0.0, seed=5)
    gate = FamilyGate(alpha=0.05, resamples=100)
    searches = horizon_searches(prob, net, group, rows, HORIZONS, n_heads, 20, day)
    margin = np.array(
        [
            max(2.0, gate.critical_z([e[g][0] for e in searches if e[g] is not None], head=g))
            for g in range(n_heads)
        ]
    )
    every = _best_over_horizons(searches, n_heads, margin, 1.0)
    resampled = []
    critical_z = FamilyGate.critical_z
    monkeypatch.setattr(
        FamilyGate,
        "critical_z",
        lambda self, found, head=0, observed=None: (
            resampled.append(head) or critical_z(self, found, head, observed=observed)
        ),
    )
    chosen = choose_among(searches, n_heads, 2.0, 1.0, gate)
    for mine, reference in zip(chosen, every, strict=True):
        np.testing.assert_array_equal(mine, reference)
    at_z = choose_among(searches, n_heads, 2.0, 1.0)[0] >= 0
    assert 0 < len(resampled) == at_z.sum() < n_heads
