"""What a fleet run holds in memory: float32 model inputs built without float64 grids or
extra copies, and the same values as before (issue 31's cost targets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_config

import huracan.family as family
import huracan.training.folds as folds
from huracan.config import build
from huracan.costs import CostModel
from huracan.factor import PCAFactor
from huracan.family import FamilyGate
from huracan.features.labels import after_cost_labels, forward_return
from huracan.hierarchy import FactorTree, HierarchyClusterer
from huracan.models import Autoencoder, FleetModule, GroupedMoEHead
from huracan.pipelines.hierarchical.book import Book, FleetRun
from huracan.thresholds import head_searches
from huracan.training.arrays import build_fleet_arrays
from huracan.training.fit import encoded, subsample
from huracan.training.folds import horizon_samples, horizon_weights, prepare_fold, walk_forward

SMALL = [
    "data.n_assets=8",
    "data.years=0.5",
    "validation.n_folds=2",
    "labels.horizons=[1,4]",
    "gates.min_history_days=10",
]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A hierarchy run's arrays and its first fold (market, leader and level channels)."""
    cfg = run_config(
        tmp_path_factory.mktemp("memory"), *SMALL, "cluster=hierarchy", "cluster.levels=[2,4]"
    )
    panel = build(cfg.data).load()
    arrays = build_fleet_arrays(panel, cfg, (1, 4))
    fold = walk_forward(cfg, horizon=4).split(panel)[0]
    return arrays, fold, prepare_fold(arrays, fold, cfg, None), panel, cfg


def test_the_fleet_arrays_and_the_fold_grids_are_float32(fleet):
    arrays, _, data, _, _ = fleet
    assert arrays.features.dtype == np.float32
    assert arrays.label_h.dtype == arrays.gross_h.dtype == np.float32
    assert data.channels.dtype == np.float32
    assert data.ffd.dtype == np.float32
    assert len(data.channel_names) == data.channels.shape[2] == 9  # 3 market, 3 leader, 3 level


def test_labels_are_filled_a_horizon_at_a_time_with_the_label_functions(fleet):
    """Each horizon's slice is its label function's grid: labels and gross moves in
    float32 (exact for 0/1/NaN labels), net returns, the first horizon's gross move and
    the costs in float64."""
    arrays, _, _, panel, cfg = fleet
    costs = CostModel(**{k: v for k, v in cfg.costs.items() if v is not None})
    assert arrays.net_h.dtype == arrays.gross_return.dtype == arrays.cost_bps.dtype == np.float64
    for i, h in enumerate(arrays.horizons):
        label, net = after_cost_labels(panel, h, costs, arrays.volatility, cfg.labels.vol_window)
        gross = forward_return(panel.close, h)
        np.testing.assert_array_equal(arrays.label_h[..., i], label.astype(np.float32))
        np.testing.assert_array_equal(arrays.net_h[..., i], net)
        np.testing.assert_array_equal(arrays.gross_h[..., i], gross.astype(np.float32))
        if i == 0:
            np.testing.assert_array_equal(arrays.gross_return, gross)
            np.testing.assert_array_equal(arrays.cost_bps, (gross - net) * 1e4)


def test_fold_inputs_are_the_scaled_concatenation_in_float32(fleet, monkeypatch):
    """The inputs gathered in chunks and scaled in place are exactly the scaled
    concatenation of features and fracdiff (as built before), across chunk edges."""
    arrays, fold, data, _, _ = fleet
    monkeypatch.setattr(folds, "_GATHER_ROWS", 7)
    t_idx, a_idx = np.nonzero(np.isfinite(data.ffd[fold.train]))
    t_idx = fold.train[t_idx]
    rows = np.concatenate([arrays.features[t_idx, a_idx], data.ffd[t_idx, a_idx][:, None]], axis=1)
    expected = data.scaler.transform_rows(rows, a_idx)
    got = data.inputs(t_idx, a_idx)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    one = t_idx[a_idx == 3]
    np.testing.assert_array_equal(data.inputs(one, 3), expected[a_idx == 3])


def test_transform_rows_in_place_writes_the_same_values(fleet):
    arrays, fold, data, _, _ = fleet
    t_idx, a_idx = np.nonzero(np.isfinite(data.ffd[fold.val]))
    rows = np.concatenate(
        [arrays.features[fold.val[t_idx], a_idx], data.ffd[fold.val[t_idx], a_idx][:, None]], 1
    )
    expected = data.scaler.transform_rows(rows, a_idx)
    out = data.scaler.transform_rows(rows, a_idx, out=rows)
    assert out is rows
    np.testing.assert_array_equal(rows, expected)
    with pytest.raises(ValueError, match="out must be"):
        data.scaler.transform_rows(rows, a_idx, out=rows.astype(np.float64))


def test_the_family_gate_is_the_same_for_any_chunk_of_resamples(monkeypatch):
    """The gate's resamples are drawn and summed in chunks (a bounded peak): the critical
    value does not depend on the chunk."""
    rng = np.random.default_rng(3)
    n, day = 600, np.arange(600) // 24
    net = rng.standard_t(4, (n, 2)) * 0.005
    searches = [
        head_searches(rng.uniform(size=n), net[:, i], np.zeros(n, int), 1, 20, day)[0][0]
        for i in (0, 1)
    ]
    gate = FamilyGate(alpha=0.05, resamples=200)
    whole = gate.critical_z(searches)
    monkeypatch.setattr(family, "CHUNK", 7 * n)  # 7 resamples at a time
    assert gate.critical_z(searches) == whole


def planted_returns(n_bars: int = 600, n_assets: int = 9, seed: int = 0):
    rng = np.random.default_rng(seed)
    market = rng.standard_normal(n_bars)
    sector = rng.standard_normal((n_bars, 3))[:, np.arange(n_assets) // 3]
    returns = 0.01 * (market[:, None] + sector + 0.5 * rng.standard_normal((n_bars, n_assets)))
    returns[:40, -1] = np.nan  # a late listing
    return returns, [f"C{j}" for j in range(n_assets)]


@pytest.mark.parametrize("residual", [False, True])
def test_float32_factor_channels_are_the_float64_ones_cast(residual):
    returns, symbols = planted_returns()
    factor = PCAFactor(leader="C0", residual=residual, leader_channel=True)
    factor.fit(returns, symbols[:3], symbols)
    listed = np.isfinite(returns)
    wide = factor.channels(returns, None, listed)
    narrow = factor.channels(returns, None, listed, dtype=np.float32)
    assert wide.values.dtype == np.float64 and narrow.values.dtype == np.float32
    np.testing.assert_array_equal(narrow.values, wide.values.astype(np.float32))
    assert narrow.names == wide.names


def test_float32_level_channels_are_the_float64_ones_cast():
    returns, symbols = planted_returns()
    top = HierarchyClusterer(levels=[2, 3], n_clusters=2).fit(returns, symbols)
    market = PCAFactor(leader="C0").fit(returns, top.result_.cluster_members[0], symbols)
    factor = market.transform(returns)
    tree = FactorTree([2, 3]).fit(returns, factor, top.labels_)
    listed = np.isfinite(returns)
    wide = tree.channels(returns, factor, listed)
    narrow = tree.channels(returns, factor, listed, np.float32)
    assert narrow.values.dtype == np.float32
    np.testing.assert_array_equal(narrow.values, wide.values.astype(np.float32))
    assert np.isnan(narrow.values[:40, -1]).all()  # no bar: no channel


def test_a_book_forgets_its_outcomes_and_reads_them_again(fleet):
    arrays, fold, _, _, _ = fleet
    book = Book.empty(arrays)
    book.index[fold.test] = 1
    book.signals[fold.test] = True
    first = book.net_return.copy(), book.label.copy(), book.hold.copy()
    book.forget_outcomes()
    assert "net_return" not in vars(book)
    for before, again in zip(first, (book.net_return, book.label, book.hold), strict=True):
        np.testing.assert_array_equal(again, before)


def test_lazy_training_inputs_read_as_the_tensor_they_stand_for(fleet):
    """Inputs gathered when read (``LazyInputs``) give the rows and the encoder's subset of
    the whole tensor bit for bit, and its codes and predictions to within a float32 step;
    the other tensors are the same."""
    arrays, fold, data, _, _ = fleet
    valid = data.valid(arrays)
    eager, t_idx, a_idx = data.samples(arrays, fold.train, valid)
    lazy, lazy_t, lazy_a = data.samples(arrays, fold.train, valid, lazy_inputs=True)
    np.testing.assert_array_equal(lazy_t, t_idx)
    np.testing.assert_array_equal(lazy_a, a_idx)
    x = eager["x"]
    assert isinstance(lazy["x"], folds.LazyInputs)
    assert len(lazy["x"]) == len(x) and lazy["x"].shape == x.shape
    assert lazy["x"].dtype == x.dtype
    rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:50]
    assert torch.equal(lazy["x"][rows], x[rows])
    assert torch.equal(lazy["x"][3:40], x[3:40])
    np.testing.assert_array_equal(lazy["x"].numpy(), x.numpy())
    for name in ("factor", "group", "y", "w"):
        assert torch.equal(lazy[name], eager[name])
    assert torch.equal(subsample(lazy["x"], 30, 1), subsample(x, 30, 1))
    torch.manual_seed(0)
    encoder = Autoencoder(x.shape[1], 4, (8,))
    codes = encoded(encoder, lazy, chunk=17)["x"]
    # the inputs are bit for bit (above); what the encoder makes of them is to the last bit
    # on the machines of the earlier sessions and CI, and within one float32 step on an AVX2
    # machine (AMD EPYC, 2026-12-07: 2.4e-7), whose kernels follow the rows' memory layout
    close = {"rtol": 1e-6, "atol": 1e-6}
    torch.testing.assert_close(codes, encoded(encoder, eager, chunk=17)["x"], **close)
    module = FleetModule(encoder, GroupedMoEHead(data.n_groups, 4 + eager["factor"].shape[1]))
    probabilities = (
        module.predict_proba(part["x"], part["factor"], part["group"], batch_size=23)
        for part in (lazy, eager)
    )
    torch.testing.assert_close(*probabilities, **close)


def test_the_fold_grids_that_lazy_inputs_read_are_dropped_last(fleet):
    arrays, fold, _, _, cfg = fleet
    data = prepare_fold(arrays, fold, cfg, None)
    lazy, _, _ = data.samples(arrays, fold.train, data.valid(arrays), lazy_inputs=True)
    data.drop_inputs(inputs=False)
    assert data.channels is None and data.ffd is not None
    first = lazy["x"][:5]
    data.drop_inputs()
    assert data.ffd is None
    with pytest.raises(RuntimeError, match="after drop_inputs"):
        lazy["x"][:5]
    assert first.shape == (5, len(data.feature_names))


def test_horizon_labels_and_weights_are_zero_where_a_horizon_has_no_label(fleet):
    """The (B, H) labels and weights zeroed in place are those of ``np.where`` (as built
    before): the label and its weight where the horizon has a label, 0 where not."""
    arrays, fold, data, _, _ = fleet
    weights = horizon_weights(arrays, fold)
    every_bar = np.arange(len(arrays.timestamps_ns))  # the last bars' longer horizon: none
    predict = data.valid(arrays, labelled=False)
    tensors, t_idx, a_idx = horizon_samples(data, arrays, weights, every_bar, predict)
    label = arrays.label_h[t_idx, a_idx]
    known = np.isfinite(label)
    assert not known.all() and known.any()
    np.testing.assert_array_equal(tensors["y"].numpy(), np.where(known, label, 0))
    np.testing.assert_array_equal(tensors["w"].numpy(), np.where(known, weights[t_idx, a_idx], 0))


DERIVED = ("net_h", "net_return", "label", "label_h", "gross_return", "gross_h", "cost_bps")


def test_the_fleet_arrays_hold_no_grid_they_can_derive(fleet):
    """Net returns, labels, gross moves and costs are derived from the closes and the round
    trip when read: no (T, N, H) grid is held all run."""
    arrays, _, _, _, _ = fleet
    for name in DERIVED:
        assert arrays.held(name) is None, name
    held = [v for v in vars(arrays).values() if isinstance(v, np.ndarray) and v.ndim == 3]
    assert [v.shape[2] for v in held] == [arrays.features.shape[2]]  # the features alone


def test_derived_values_read_by_cells_and_horizons_are_those_of_the_grids(fleet):
    """``net_at``, ``labels_at``, ``net_of`` and ``gross_of`` give the whole grids' values
    bit for bit: on the last bars (no trade of the longer horizon), on forward-filled bars
    and on bars without a close."""
    arrays, _, _, _, _ = fleet
    n_bars, n_assets = arrays.grid_shape
    rng = np.random.default_rng(0)
    close, filled = arrays.close.copy(), arrays.filled.copy()
    close[rng.random(close.shape) < 0.02] = np.nan  # no bar
    filled[rng.random(filled.shape) < 0.02] = True  # forward-filled
    arrays = arrays.replaced(close=close, filled=filled)
    t_idx = np.concatenate([rng.integers(0, n_bars, 2000), np.arange(n_bars - 6, n_bars)])
    a_idx = rng.integers(0, n_assets, len(t_idx))
    assert filled[t_idx, a_idx].any() and np.isnan(close[t_idx, a_idx]).any()
    net_h, label_h, gross_h = arrays.net_h, arrays.label_h, arrays.gross_h
    assert np.isnan(net_h[t_idx, a_idx]).any() and np.isfinite(net_h[t_idx, a_idx]).any()
    np.testing.assert_array_equal(arrays.net_at(t_idx, a_idx), net_h[t_idx, a_idx])
    np.testing.assert_array_equal(arrays.labels_at(t_idx, a_idx), label_h[t_idx, a_idx])
    assert arrays.labels_at(t_idx, a_idx).dtype == np.float32
    for i in range(len(arrays.horizons)):
        np.testing.assert_array_equal(arrays.net_of(i), net_h[..., i])
        np.testing.assert_array_equal(arrays.gross_of(i), gross_h[..., i])
    np.testing.assert_array_equal(arrays.net_return, net_h[..., 0])
    np.testing.assert_array_equal(arrays.label, label_h[..., 0])


def test_a_copy_keeps_derived_fields_derived_and_held_ones_held(fleet):
    """``columns`` and ``replaced`` hold what was held (or given) and derive the rest, with
    the values of the whole arrays' columns."""
    arrays, _, _, _, _ = fleet
    cols = np.array([0, 2, 5])
    part = arrays.columns(cols)
    for name in DERIVED:
        assert part.held(name) is None, name
        np.testing.assert_array_equal(getattr(part, name), getattr(arrays, name)[:, cols])
    cost = np.full(arrays.grid_shape, 12.5)
    priced = arrays.replaced(cost_bps=cost)
    assert priced.held("cost_bps") is cost and priced.held("net_h") is None
    labels = np.zeros((*arrays.grid_shape, len(arrays.horizons)), dtype=np.float32)
    given = arrays.replaced(label_h=labels)
    t_idx, a_idx = np.array([3, 40]), np.array([1, 2])
    np.testing.assert_array_equal(given.labels_at(t_idx, a_idx), labels[t_idx, a_idx])


def test_a_stored_books_results_read_back_as_written(fleet, tmp_path):
    """A book stored in the run dir holds, fold after fold and after each ``unmap``, what
    an in-memory book holds; its files read back the same values."""
    arrays, fold, _, _, _ = fleet
    stored = Book.empty(arrays, stored=tmp_path / "books" / "model")
    held = Book.empty(arrays)
    n_assets = len(arrays.symbols)
    for rows in np.array_split(fold.test, 2):  # two "folds", unmapped after each
        for book in (stored, held):
            values = np.random.default_rng(len(rows)).random((len(rows), n_assets), np.float32)
            book.probability[rows] = values
            book.scores[:, rows] = values[None] / 2
        stored.unmap()
        assert isinstance(stored.scores, np.memmap)
    for name in ("probability", "scores"):
        np.testing.assert_array_equal(getattr(stored, name), getattr(held, name))
        on_disk = np.load(tmp_path / "books" / f"model.{name}.npy")
        np.testing.assert_array_equal(on_disk, getattr(held, name))
    assert np.isnan(stored.scores[:, : fold.test[0]]).all()  # nothing written: none


def test_a_second_stored_book_leaves_the_first_ones_values(fleet, tmp_path):
    """A book stored where a live one is (a second run in the same run dir, same process)
    gets new files: the first keeps what it wrote, not NaN or a SIGBUS."""
    arrays, fold, _, _, _ = fleet
    first = Book.empty(arrays, stored=tmp_path / "books" / "model")
    first.probability[fold.test] = 0.25
    first.unmap()
    second = Book.empty(arrays, stored=tmp_path / "books" / "model")
    assert np.isnan(second.probability).all()
    assert (first.probability[fold.test] == 0.25).all()
    second.probability[fold.test] = 0.75
    second.unmap()
    assert (first.probability[fold.test] == 0.25).all()
    np.testing.assert_array_equal(
        np.load(tmp_path / "books" / "model.probability.npy"), second.probability
    )


def test_a_failing_run_removes_its_stored_books(fleet, tmp_path):
    arrays, _, _, _, _ = fleet
    run = FleetRun(
        arrays=arrays,
        folds=[],
        model=Book.empty(arrays, stored=tmp_path / "books" / "model"),
        cluster_ids=np.zeros(arrays.grid_shape, dtype=np.int16),
        test_rows=np.arange(0),
        without_factor=Book.empty(arrays, stored=tmp_path / "books" / "without_factor"),
    )
    assert len(list((tmp_path / "books").glob("*.npy"))) == 4
    with run.discarded_on_failure():  # a block that ends well keeps them
        pass
    assert len(list((tmp_path / "books").glob("*.npy"))) == 4
    with pytest.raises(RuntimeError, match="fold 1"), run.discarded_on_failure():
        raise RuntimeError("fold 1 failed")
    assert not list((tmp_path / "books").glob("*.npy"))


def test_the_first_horizons_labels_read_by_cells_are_those_of_the_grid(fleet):
    """``label_at`` and ``labelled`` (what the fold samples read) give ``label``'s values
    bit for bit: derived, from held net returns, and held (the per-coin costs' labels)."""
    arrays, _, _, _, _ = fleet
    n_bars, n_assets = arrays.grid_shape
    rng = np.random.default_rng(1)
    filled = arrays.filled.copy()
    filled[rng.random(filled.shape) < 0.02] = True  # forward-filled: no label
    derived = arrays.replaced(filled=filled)
    t_idx = np.concatenate([rng.integers(0, n_bars, 2000), np.arange(n_bars - 6, n_bars)])
    a_idx = rng.integers(0, n_assets, len(t_idx))
    net = derived.net_return + 1e-3  # held net returns other than the derived ones
    label = np.where(rng.random(net.shape) < 0.5, np.nan, 1.0)  # held labels of their own
    for case in (derived, derived.replaced(net_return=net), derived.replaced(label=label)):
        grid = case.label
        assert np.isnan(grid).any() and np.isfinite(grid).any()
        np.testing.assert_array_equal(case.label_at(t_idx, a_idx), grid[t_idx, a_idx])
        np.testing.assert_array_equal(case.labelled(), np.isfinite(grid))
    assert derived.held("label") is None and derived.held("net_return") is None


def test_a_run_scans_only_what_it_makes_and_hands_the_heap_back(tmp_path, monkeypatch):
    """train() runs its pipeline inside frozen_heap: the objects alive before it are out of
    the collector's scans, a cycle the run makes is still collected, and on the way out
    (an error too) every object is handed back."""
    import gc
    import weakref

    import huracan.run
    from huracan.memory import frozen_heap

    class Node:
        pass

    seen = {}

    def spy(*args, **kwargs):
        seen["frozen"] = gc.get_freeze_count()
        cycle = Node()
        cycle.me = cycle
        alive = weakref.ref(cycle)
        del cycle
        gc.collect()
        seen["cycle_collected"] = alive() is None
        raise RuntimeError("stop here")

    monkeypatch.setattr(huracan.run, "run_pipeline", spy)
    with pytest.raises(RuntimeError, match="stop here"):
        huracan.run.train(run_config(tmp_path, "pipeline=data", "data.n_assets=3"))
    assert seen["cycle_collected"]
    assert seen["frozen"] > 10_000  # the libraries' objects
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    gc.freeze()  # the caller's own freeze (or an enclosing block) is left as it was
    try:
        frozen = gc.get_freeze_count()
        with frozen_heap():
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
