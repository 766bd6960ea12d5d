"""Signals from the champions on the newest bars, with the preprocessing they were trained with.

``Fleet.load(root)`` reads the roster, each coin's champion pointer and checkpoint, and the
shared encoder's description. ``fleet.signals(bars)`` rebuilds every input with the
pipeline's own code (``build_fleet_arrays`` for the technical features and returns, the
stored FFD order, scaler statistics and market-factor state, and the factor's own
``channels``, then a stored level tree's, ``FactorTree.channels``) and scores the latest
bar: all coins sharing an encoder go through one batched model whose heads are the
champions' heads stacked along the group axis.

Longer than most modules on purpose: loading, input assembly, scoring and the reasons a
coin may not trade are the one path from raw bars to a signal, read top to bottom.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from huracan.data import CsvSource, Panel
from huracan.data.files import scan_directory
from huracan.errors import ConfigError, DataError, HuracanError
from huracan.factor import MarketFactorExtractor
from huracan.features.drift import psi, psi_of_bins
from huracan.features.fracdiff import for_features
from huracan.features.scaling import PanelScaler
from huracan.hierarchy import FactorTree
from huracan.models import FleetModule, GroupedMoEHead
from huracan.models.checkpoint import head_spec
from huracan.registry.artifacts import read_champion
from huracan.registry.champions import pointer_problem
from huracan.registry.roster import load_roster, select
from huracan.serve.model import (
    NO_CHAMPION,
    CoinModel,
    ModelUnusable,
    dict_config,
    expected_net_bps,
    input_symbols,
    load_coin,
    trained_timeframe,
)
from huracan.serve.positions import Position, with_positions
from huracan.store import ArtifactNotFound, LocalStore, Store
from huracan.training.arrays import build_fleet_arrays

log = logging.getLogger("huracan")

SIGNAL_FIELDS = [
    "symbol",
    "bar_time",
    "probability",
    "horizon",
    "threshold",
    "trade",
    "expected_net_bps",
    "model_path",
    "model_age_hours",
    "drift",
    "reasons",
    "position",  # flat / open, entry time, exit due (``huracan.serve.positions``)
]


@dataclass
class ServeConfig:
    """How signals are served (``serve.*``).

    Attributes:
        expire_hours: a champion last vouched for longer ago than this before the signal's
            bar does not trade (FreqAI's ``expiration_hours``); None: never. It is vouched
            for until the end of the windows it was last scored on out of sample (the
            per-coin test window, a Mechanic holdout: ``CoinModel.judged_until``), or its
            training data's end where that is later. A fresh per-coin champion is scored
            on the 30 days after its training data, so it is fresh when the run ends.
        ema_tolerance: weight of an EMA's starting value that may be left after the
            warm-up; sets how many bars the RSI, MACD and ATR need.
        drift_window: bars of recent inputs whose distribution is compared with the
            training window's (``drift``: the largest population stability index).
        max_psi: drift above this flags the coin (``drift.max_psi``).
        drift_action: ``block``: a drifted coin does not trade; ``warn`` (default): it
            may, and only its ``drift`` score shows it. Persistent inputs (volatility,
            the FFD level) often exceed 0.25 over one week without a regime change, so
            blocking is opt-in.
    """

    expire_hours: float | None = 168.0
    ema_tolerance: float = 1e-9
    drift_window: int = 168
    max_psi: float = 0.25
    drift_action: str = "warn"

    def __post_init__(self) -> None:
        if self.expire_hours is not None and not self.expire_hours >= 0:
            raise ConfigError(f"expire_hours must be >= 0 or None, got {self.expire_hours}")
        if not (np.isfinite(self.max_psi) and self.max_psi > 0):
            raise ConfigError(f"max_psi must be finite and > 0, got {self.max_psi}")
        if self.drift_action not in ("block", "warn"):
            raise ConfigError(f"drift.action must be block or warn, got {self.drift_action!r}")
        if self.drift_window < 2:
            raise ConfigError(f"drift_window must be >= 2 bars, got {self.drift_window}")


class Fleet:
    """The roster's champions, loaded once, scoring bars on demand.

    Attributes:
        models: symbol -> loaded champion, in roster order.
        unusable: symbol -> why its champion could not be loaded (it never trades).
        roster: the roster as read.
        shared_encoder: ``meta/shared_encoder.json`` (None when the store has none).
        config: the serving settings.
    """

    def __init__(
        self,
        models: dict[str, CoinModel],
        unusable: dict[str, str],
        roster: dict,
        shared_encoder: dict | None,
        config: ServeConfig,
    ):
        self.models = models
        self.unusable = unusable
        self.roster = roster
        self.shared_encoder = shared_encoder
        self.config = config
        self._batched = _stack_heads(list(models.values()))
        # the latest bar's traded symbols: the panel, its row, symbol -> traded, and
        # input group -> whether none of its symbols traded
        self._traded_at: tuple[Panel | None, int, dict, dict] = (None, -1, {}, {})

    @classmethod
    def load(
        cls,
        root: Store | str | Path,
        *,
        top: int | None = None,
        allow: Sequence[str] | None = None,
        block: Sequence[str] | None = None,
        config: ServeConfig | None = None,
        reuse: Fleet | None = None,
    ) -> Fleet:
        """Loads the roster's champions and their preprocessing state.

        Args:
            root: a store, or the directory of a local one.
            top: keep the best ``top`` roster entries (after ``allow`` and ``block``).
            allow: keep only these symbols.
            block: leave these symbols out.
            config: serving settings (defaults: ``ServeConfig()``).
            reuse: a fleet loaded before from the same store: a coin whose champion
                pointer still points at the version its model there was loaded from
                keeps that model (with its new roster entry and pointer figures)
                instead of reading its checkpoint again.

        Raises:
            ArtifactNotFound: the store has no roster.
            DataError: the roster or a champion pointer is malformed (one line naming it).
        """
        if top is not None and top < 1:
            raise ConfigError(f"top must be >= 1 (the best N roster entries), got {top}")
        config = config or ServeConfig()
        store = root if isinstance(root, Store) else LocalStore(root)
        roster = load_roster(store)
        entries = select(roster, top, list(allow or []), list(block or []), include_not_ok=True)
        models, unusable = {}, {}
        for entry in entries:
            try:
                models[entry["symbol"]] = _reused(store, entry, reuse, config) or load_coin(
                    store, entry, config.ema_tolerance
                )
            except DataError:  # a malformed pointer: the store needs repair, not guesses
                raise
            except (ModelUnusable, ArtifactNotFound, ValueError, KeyError) as err:
                unusable[entry["symbol"]] = f"model unusable: {err}"
                if not str(err).startswith(NO_CHAMPION):  # a coin without one is expected
                    log.warning("%s: %s", entry["symbol"], unusable[entry["symbol"]])
        without = [
            s for s, why in unusable.items() if why.startswith(f"model unusable: {NO_CHAMPION}")
        ]
        if without:
            log.info(
                "%d roster coin(s) have no champion (no model passed its test window): %s",
                len(without),
                ", ".join(without[:12]) + (", ..." if len(without) > 12 else ""),
            )
        try:
            shared = store.read_json("meta/shared_encoder.json")
        except ArtifactNotFound:
            shared = None
        return cls(models, unusable, roster, shared, config)

    @property
    def symbols(self) -> list[str]:
        """The roster coins this fleet answers for: the loaded ones, then the unusable."""
        return [*self.models, *self.unusable]

    @property
    def warmup_bars(self) -> int:
        """Bars of history ``signals`` needs: the most any champion needs."""
        return max((m.warmup for m in self.models.values()), default=1)

    @property
    def bars_needed(self) -> int:
        """Bars ``signals`` reads: the warm-up, plus the drift window's earlier bars."""
        return self.warmup_bars + self.config.drift_window - 1

    @property
    def data_symbols(self) -> list[str]:
        """The symbols whose bars are needed: the coins, then every other symbol an input
        reads (the market factor's members and its leader channel's symbol, a level
        tree's members of each coin's path)."""
        models = self.models.values()
        needed = {s for m in models for s in input_symbols(m.description, [m.symbol])}
        return [*self.symbols, *sorted(needed - set(self.symbols))]

    def read_bars(self, path: str | Path) -> Panel:
        """The fleet's bars from a directory in the input contract (missing files allowed:
        their coins get a reason); read and aligned as the training data was."""
        available, _ = scan_directory(Path(path).expanduser())  # unusable files: no bars
        wanted = [s for s in self.data_symbols if s in available]
        if not wanted:
            raise ConfigError(f"{path} holds none of the fleet's symbols {self.data_symbols[:10]}")
        data = next(iter(self.models.values())).config["data"] if self.models else {}
        # read as the training data was: the same gap fill, move limit and quote names
        options = {k: data[k] for k in ("max_ffill", "max_bar_move", "quotes") if k in data}
        options["ragged_end"] = data.get("ragged_end")  # a fleet trained before it: no cut
        # a file with a bad row skips its coin (the reason in panel.drops), not the fleet
        return CsvSource(str(path), symbols=wanted, on_error="skip", **options).load()

    def predict(self, bars: Panel) -> pd.DataFrame:
        """Every bar's probability for every loaded coin, from the inputs on ``bars``.

        Returns:
            (T, coins) frame indexed by bar time; NaN where an input is missing.
        """
        return self.probabilities(bars)[0]

    def probabilities(
        self, bars: Panel, start: pd.Timestamp | None = None
    ) -> tuple[pd.DataFrame, dict[str, list[str]]]:
        """Each loaded coin's probability on the bars from ``start`` on, the bars before it
        serving as warm-up, and why a coin's inputs cannot be built on ``bars``.

        Returns:
            (T', coins) frame indexed by bar time (NaN where an input is missing), and
            symbol -> reasons for the coins not scored.
        """
        first = 0 if start is None else int(bars.timestamps.searchsorted(start, "left"))
        rows = np.arange(first, bars.n_bars)
        probability, problems, _ = self._probabilities(bars, rows)
        frame = pd.DataFrame(probability, index=bars.timestamps[rows], columns=list(self.models))
        return frame, problems

    def inputs(self, panel: Panel) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
        """Every bar's inputs of each loaded coin, as its own model sees them.

        Returns:
            symbol -> (scaled features (T, F), factor channels (T, C)); and symbol ->
            reasons for the coins whose inputs the bars cannot give.
        """
        groups: dict[str, list[str]] = {}
        problems = {s: ["no bars for this symbol"] for s in self.models if s not in panel.symbols}
        for symbol, model in self.models.items():
            if symbol in panel.symbols:
                groups.setdefault(model.preprocessing_key, []).append(symbol)
        out = {}
        for coins in groups.values():
            try:
                x, channels = self._inputs(panel, coins, np.arange(panel.n_bars))
            except HuracanError as err:
                problems |= {s: [str(err)] for s in coins}
                continue
            out |= {s: (x[:, i], channels[:, i]) for i, s in enumerate(coins)}
        return out, problems

    def signals(
        self,
        bars: Panel | str | Path,
        positions: dict[str, Position] | None = None,
        now: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """One row per roster coin for the latest bar (columns ``SIGNAL_FIELDS``).

        Only the last ``bars_needed`` bars are used, so a longer history gives the same
        answer; the probability needs only the last ``warmup_bars`` of them, the drift
        score the rest (it is None with fewer). A coin without a full, gap-free warm-up,
        without a bar at the latest time, drifted (``drift`` > ``max_psi``, unless
        ``drift_action`` is ``warn``), with an expired or unusable champion, or one the
        roster does not let trade gets ``trade=False`` and its ``reasons``; probability
        is None when its inputs are not those the model was trained with.

        A bar still in progress (its open time plus the bar length after ``now``) is
        never taken as the latest: only closed bars are read. A coin whose file has a bad
        row is left out of the bars and gets the file's problem as its reason.

        ``trade`` means a new entry at the latest bar's close: a coin whose position (from
        ``positions``) is still open does not trade; ``position`` says what is held after
        the bar (``huracan.serve.positions``).

        Args:
            bars: the latest bars, as a Panel or a directory of per-symbol files.
            positions: symbol -> the open position held before the latest bar (None: flat).
            now: the present (default: the clock).
        """
        window, probability, problems, inputs = self._latest(bars, now)
        measured = window.n_bars >= self.bars_needed
        psi_by_coin = self._psi(inputs) if measured else {}
        last = window.n_bars - 1
        frame = self.decisions(window, last, probability[-1], problems, psi_by_coin)
        return with_positions(frame, positions, pd.Timedelta(window.timeframe))

    def decisions(
        self,
        panel: Panel,
        t: int,
        probability: np.ndarray,
        problems: dict[str, list[str]],
        psi_by_coin: dict[str, np.ndarray],
    ) -> pd.DataFrame:
        """The signal rules at bar ``t`` of ``panel``: one row per roster coin, before
        positions (``signals`` and ``SignalTape`` both decide here).

        Args:
            panel: bars whose row ``t`` is the latest (rows after it are not read).
            t: the latest bar's row.
            probability: (coins,) each loaded coin's probability at ``t``, in ``models``
                order (NaN where its input is not finite).
            problems: symbol -> why its inputs cannot be built.
            psi_by_coin: symbol -> PSI per input over the drift window ending at ``t``
                (empty where fewer bars than ``bars_needed`` were read).
        """
        bar_time = panel.timestamps[t]
        rows = []
        for j, (symbol, model) in enumerate(self.models.items()):
            reasons = list(problems.get(symbol) or self._bar_reasons(panel, t, model))
            p = float(probability[j])
            drift = None
            scores = psi_by_coin.get(symbol)
            if not reasons and scores is not None and np.isfinite(scores).any():
                drift = round(float(np.nanmax(scores)), 6)
            drifted = drift is not None and drift > self.config.max_psi
            if drifted and self.config.drift_action == "block":
                reasons.append(f"drift: PSI {drift:.3f} > {self.config.max_psi}")
            if reasons or not np.isfinite(p):
                reasons = reasons or ["inputs not finite at the latest bar"]
                p = None
            age = (bar_time - model.data_end).total_seconds() / 3600
            vouched = (bar_time - model.judged_until(bar_time)).total_seconds() / 3600
            expire = self.config.expire_hours
            if expire is not None and vouched > expire:
                reasons.append("expired")
            if not model.roster.get("trade_ok", False):
                reasons += [f"roster: {r}" for r in model.roster.get("reasons") or ["not trade_ok"]]
            if model.threshold is None:
                reasons.append("no threshold: no edge after costs on validation")
            elif p is not None and p < model.threshold and not reasons:
                reasons.append(f"probability {p:.4f} < threshold {model.threshold:.4f}")
            rows.append(
                {
                    "symbol": symbol,
                    "bar_time": bar_time,
                    "probability": p,
                    "horizon": model.horizon,
                    "threshold": model.threshold,
                    "trade": not reasons,
                    "expected_net_bps": model.expected_net_bps,
                    "model_path": model.model_path,
                    "model_age_hours": round(age, 3),
                    "drift": drift,
                    "reasons": reasons,
                }
            )
        for symbol, why in self.unusable.items():
            rows.append(
                {
                    **dict.fromkeys(SIGNAL_FIELDS),
                    "symbol": symbol,
                    "bar_time": bar_time,
                    "trade": False,
                    "model_path": _roster_path(self.roster, symbol),
                    "reasons": [why],
                }
            )
        rank = {e["symbol"]: e["rank"] for e in self.roster["entries"]}
        rows.sort(key=lambda row: rank.get(row["symbol"], len(rank) + 1))
        return pd.DataFrame(rows, columns=SIGNAL_FIELDS)

    def _bar_reasons(self, panel: Panel, t: int, model: CoinModel) -> list[str]:
        """Why this coin's bars up to row ``t`` cannot give its model's input there, if so."""
        if model.symbol not in panel.symbols:
            skipped = [d.detail for d in panel.drops if d.symbol == model.symbol and d.detail]
            return [f"bad bars: {skipped[0]}" if skipped else "no bars for this symbol"]
        timeframe = trained_timeframe(model.description)
        if pd.Timedelta(timeframe) != pd.Timedelta(panel.timeframe):
            return [f"bars are {panel.timeframe}, the model was trained on {timeframe}"]
        j = panel.index_of(model.symbol)
        close = panel.close[max(t + 1 - model.warmup, 0) : t + 1, j]
        have = int(np.isfinite(close).sum())
        if len(close) < model.warmup:
            return [f"warm-up: {len(close)} bars, {model.warmup} needed"]
        if not np.isfinite(close[-1]):
            return [f"no bar at {panel.timestamps[t]}"]
        if panel.filled[t, j]:  # training never scored one
            return ["latest bar forward-filled: nothing traded"]
        if have < model.warmup:
            first = int(np.argmax(np.isfinite(close)))
            if np.isfinite(close[first:]).all():
                return [f"warm-up: {have} bars since listing, {model.warmup} needed"]
            return [f"gap: {model.warmup - have} of the last {model.warmup} bars missing"]
        return self._input_reasons(panel, t, model)

    def _input_reasons(self, panel: Panel, t: int, model: CoinModel) -> list[str]:
        """Why a factor input of ``model`` is not what it learned from at row ``t``: no
        symbol it needs one of has a bar there (their files end before it: a live folder
        whose files are still updating, a member delisted since training), so the input
        reads flat or zero (``CoinModel.input_groups``). A forward-filled bar (a gap of at
        most ``data.max_ffill`` bars inside a file) is not a reason: training read those
        bars the same way, and the per-coin backtest the replay matches trades on them."""
        cached_panel, cached_t, traded, stale = self._traded_at
        if cached_panel is not panel or cached_t != t:  # once per bar, not once per coin
            at = np.isfinite(panel.close[t])
            traded, stale = dict(zip(panel.symbols, at.tolist(), strict=True)), {}
            self._traded_at = (panel, t, traded, stale)
        reasons = []
        for what, symbols in model.input_groups:
            if symbols not in stale:  # a group many coins share (the market factor): once
                present = [s for s in symbols if s in traded]  # none: _inputs names them
                stale[symbols] = bool(present) and not any(traded[s] for s in present)
            if stale[symbols]:
                names = [s for s in symbols if s in traded]
                names = names if len(names) <= 3 else [*names[:3], "..."]
                reasons.append(f"{what}: no bar of {names} at {panel.timestamps[t]}")
        return reasons

    def drift(self, bars: Panel | str | Path, now: pd.Timestamp | None = None) -> pd.DataFrame:
        """Each coin's PSI per input over the last ``drift_window`` bars (coins x inputs).

        NaN for a coin without a reference distribution or whose inputs cannot be built;
        ``signals`` reports the row maximum as ``drift``.
        """
        _, _, _, inputs = self._latest(bars, now)
        rows = self._psi(inputs)
        names = dict.fromkeys(n for m in self.models.values() for n in m.description["inputs"])
        frame = pd.DataFrame(
            {s: pd.Series(v, index=self.models[s].description["inputs"]) for s, v in rows.items()}
        )
        return frame.T.reindex(index=list(inputs), columns=list(names)).astype(float)

    def _latest(
        self, bars: Panel | str | Path, now: pd.Timestamp | None
    ) -> tuple[Panel, np.ndarray, dict, dict]:
        """The last ``bars_needed`` closed bars, the latest probabilities, problems, inputs."""
        panel = closed_bars(bars if isinstance(bars, Panel) else self.read_bars(bars), now)
        window = panel.between(panel.timestamps[max(panel.n_bars - self.bars_needed, 0)], None)
        recent = np.arange(max(window.n_bars - self.config.drift_window, 0), window.n_bars)
        probability, problems, inputs = self._probabilities(
            window, recent, last_only=True, keep_inputs=True
        )
        return window, probability, problems, inputs

    def _psi(self, inputs: dict[str, np.ndarray], binned: bool = False) -> dict[str, np.ndarray]:
        """Symbol -> PSI per input column (NaN without a reference), all coins at once.
        ``binned``: each coin's inputs are already ``bin_index``-ed on its reference."""
        out = {s: np.full(v.shape[1], np.nan) for s, v in inputs.items()}
        by_shape: dict[tuple, list[str]] = {}
        for symbol in inputs:
            reference = self.models[symbol].description.get("reference")
            if reference is not None:
                by_shape.setdefault(np.shape(reference["edges"]), []).append(symbol)
        for coins in by_shape.values():  # one batch per input width: usually one
            references = [self.models[s].description["reference"] for s in coins]
            stacked = {k: np.stack([r[k] for r in references]) for k in ("edges", "shares")}
            values = np.stack([inputs[s] for s in coins])  # (coins, W, K)
            scores = psi_of_bins(stacked, values) if binned else psi(stacked, values)
            out |= dict(zip(coins, scores, strict=True))  # (coins, K)
        return out

    def _probabilities(
        self, panel: Panel, rows: np.ndarray, last_only: bool = False, keep_inputs: bool = False
    ) -> tuple[np.ndarray, dict, dict]:
        """Probabilities on ``rows`` (only the last one with ``last_only``), (len(rows),
        coins); symbol -> reasons for coins not scored; symbol -> (len(rows), F + C)
        inputs, kept with ``keep_inputs`` (for the drift score)."""
        symbols = list(self.models)
        out = np.full((len(rows), len(symbols)), np.nan)
        problems: dict[str, list[str]] = {}
        kept: dict[str, np.ndarray] = {}
        groups: dict[str, list[str]] = {}
        for symbol, model in self.models.items():
            if symbol in panel.symbols:
                groups.setdefault(model.preprocessing_key, []).append(symbol)
        for coins in groups.values():
            # no model is scored on fewer bars than its warm-up (its inputs are not those it
            # was trained on, and the feature and label checks need bars to check)
            short = [s for s in coins if panel.n_bars < self.models[s].warmup]
            problems |= {
                s: [f"warm-up: {panel.n_bars} bars, {self.models[s].warmup} needed"] for s in short
            }
            coins = [s for s in coins if s not in short]
            if not coins:
                continue
            try:
                x, channels = self._inputs(panel, coins, rows)  # (R, n, F), (R, n, C)
            except HuracanError as err:
                problems |= {s: [str(err)] for s in coins}
                continue
            position = {s: i for i, s in enumerate(coins)}
            if keep_inputs:
                joined = np.concatenate([x, channels], axis=2)  # (R, n, F + C)
                kept |= {s: joined[:, i] for s, i in position.items()}
            if last_only:
                x, channels = x[-1:], channels[-1:]
            for module, index in self._batched.values():
                members = [s for s in coins if s in index]
                if not members:
                    continue
                cols = [position[s] for s in members]
                heads = np.array([index[s] for s in members])
                xs, cs = x[:, cols], channels[:, cols]  # (R, m, F), (R, m, C)
                finite = np.isfinite(xs).all(-1) & np.isfinite(cs).all(-1)  # (R, m)
                r_idx, m_idx = np.nonzero(finite)
                with torch.no_grad():
                    p = module.predict_proba(
                        torch.as_tensor(np.ascontiguousarray(xs[r_idx, m_idx])),
                        torch.as_tensor(np.ascontiguousarray(cs[r_idx, m_idx])),
                        torch.as_tensor(heads[m_idx], dtype=torch.int64),
                    ).numpy()
                r_idx = r_idx + (len(rows) - 1 if last_only else 0)
                out[r_idx, [symbols.index(members[m]) for m in m_idx]] = p
        return out, problems, kept

    def _inputs(
        self, panel: Panel, coins: list[str], rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scaled features and factor channels of ``coins`` on ``rows`` of the panel.

        Raises:
            HuracanError: the bars cannot give these models' inputs (a factor member
                without bars, a feature the bars lack).
        """
        models = [self.models[s] for s in coins]
        first = models[0]
        factor_state, tree_state = first.description["factor"], first.description.get("tree")
        needed = input_symbols(first.description, coins)
        missing = [s for s in needed if s not in panel.symbols]
        if missing:
            bad = [d.detail for d in panel.drops if d.symbol in missing and d.detail]
            why = f" (bad bars: {bad[0]})" if bad else ""
            what = "market factor member(s) or leader"
            if tree_state is not None:
                what = "market factor or level tree member(s) or leader"
            raise ConfigError(f"{what} {missing} have no bars{why}")
        symbols = [*coins, *[s for s in needed if s not in coins]]
        sub = panel.select(symbols)
        cfg = dict_config(first.config)
        arrays = build_fleet_arrays(sub, cfg)
        stored = first.description["features"]
        technical = [f for f in stored if f != "fracdiff"]
        if arrays.feature_names != technical:
            raise ConfigError(
                f"the bars give features {arrays.feature_names}, the model needs {technical}"
            )
        features = arrays.features
        if "fracdiff" in stored:
            orders = [m.description.get("fracdiff_d") for m in models]
            ffd = for_features(cfg.features, panel.bar_seconds).with_orders(
                orders + [None] * (len(symbols) - len(coins))
            )
            values = ffd.transform(arrays.log_close).astype(np.float32)
            features = np.concatenate([features, values[:, :, None]], axis=2)
        n_features = features.shape[2]
        pad = len(symbols) - len(coins)  # factor inputs that are not served: never scored
        # each model's own one-coin scaler state ((1, F); (F,) from older versions)
        states = [m.description["scaler"] for m in models]
        scaler = PanelScaler.from_state_dict(
            {
                "mean": [np.ravel(st["mean"]).tolist() for st in states]
                + [[0.0] * n_features] * pad,
                "std": [np.ravel(st["std"]).tolist() for st in states] + [[1.0] * n_features] * pad,
                "clip": cfg.features.clip,
                "min_count": 2,
            }
        )
        x = scaler.transform(features[rows])
        factor = MarketFactorExtractor.from_dict(factor_state, symbols)
        factor.n_lags, factor.max_ffill = cfg.factor.n_lags, cfg.factor.max_ffill
        channels = factor.channels(
            arrays.returns, arrays.quote_volume, arrays.listed
        ).values.astype(np.float32)
        if tree_state is not None:  # the levels' channels after the market's, as trained
            tree = FactorTree.from_dict(tree_state, symbols)
            market = factor.transform(arrays.returns, arrays.quote_volume)
            levels = tree.channels(arrays.returns, market, arrays.listed, np.float32)
            channels = np.concatenate([channels, levels.values], axis=2)
        n = len(coins)
        return x[:, :n], channels[rows][:, :n]


def closed_bars(panel: Panel, now: pd.Timestamp | None = None) -> Panel:
    """The bars that have closed by ``now`` (open time + bar length <= now).

    Raises:
        DataError: no bar has closed yet.
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    now = now.tz_localize("UTC") if now.tzinfo is None else now
    n_closed = int(np.sum(panel.timestamps + pd.Timedelta(panel.timeframe) <= now))  # sorted
    if n_closed == 0:
        raise DataError("bars", f"no bar of {panel.timeframe} has closed by {now:%Y-%m-%d %H:%M}")
    return panel if n_closed == panel.n_bars else panel.between(None, panel.timestamps[n_closed])


def _stack_heads(models: list[CoinModel]) -> dict[str, tuple[FleetModule, dict[str, int]]]:
    """One module per encoder and head shape, its heads the coins' heads side by side."""
    by_key: dict[str, list[CoinModel]] = {}
    for model in models:
        spec = head_spec(model.module.head)
        key = model.encoder_key + json.dumps({k: v for k, v in spec.items() if k != "n_groups"})
        by_key.setdefault(key, []).append(model)
    batched = {}
    for key, group in by_key.items():
        heads = [m.module.head for m in group]
        spec = head_spec(heads[0])
        stacked = GroupedMoEHead(
            len(heads), spec["in_dim"], spec["n_experts"], spec["hidden"], spec["top_k"]
        )
        with torch.no_grad():
            for name, param in stacked.named_parameters():
                param.copy_(torch.cat([getattr(h, name) for h in heads]))
        first = group[0].module
        module = FleetModule(first.encoder, stacked, first.lr, False, first.balance_weight)
        batched[key] = (module.eval(), {m.symbol: i for i, m in enumerate(group)})
    return batched


def _reused(store: Store, entry: dict, fleet: Fleet | None, config: ServeConfig):
    """``fleet``'s model of the entry's coin, where its champion pointer still points at
    the version it was loaded from (a version's files never change): with the entry as its
    roster entry and the pointer's figures (a kept champion's pointer gets new ones). None:
    load it again."""
    if fleet is None or fleet.config.ema_tolerance != config.ema_tolerance:
        return None
    symbol = entry["symbol"]
    model = fleet.models.get(symbol)
    if model is None or model.pointer is None:
        return None
    pointer = read_champion(store, symbol)
    if pointer is None or pointer["model_path"] != model.model_path:
        return None
    if pointer != model.pointer and pointer_problem(store, symbol, pointer) is not None:
        return None
    return replace(model, roster=entry, pointer=pointer, expected_net_bps=expected_net_bps(pointer))


def _roster_path(roster: dict, symbol: str) -> str | None:
    return next((e["model_path"] for e in roster["entries"] if e["symbol"] == symbol), None)
