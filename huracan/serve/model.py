"""One champion as the signal service holds it: its network and its preprocessing state.

Everything comes from the model version's own files (``checkpoint.json`` and
``weights.safetensors``, checked against its manifest) and the champion pointer; nothing
is refitted. The warm-up (bars the latest signal needs) follows from that state: the FFD
window of the coin's order d, the longest technical look-back, the factor's lags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property, lru_cache
from hashlib import sha256

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from huracan.factor import MarketFactorExtractor
from huracan.features.fracdiff import for_features
from huracan.features.technical import warmup_bars
from huracan.hierarchy import FactorTree
from huracan.models import FleetModule
from huracan.models.checkpoint import META, WEIGHTS, module_from_files
from huracan.registry.artifacts import read_champion, read_manifest
from huracan.registry.champions import pointer_problem
from huracan.store import Store, content_hash

NO_CHAMPION = "no champion pointer"  # a roster coin whose model never won: expected, not an error


class ModelUnusable(Exception):
    """A roster coin whose champion cannot be served; the message is the reason."""


@dataclass
class CoinModel:
    """A champion ready to score bars.

    Attributes:
        symbol: the coin.
        model_path: its model version in the store.
        module: encoder plus its one-group head, in eval mode.
        description: the checkpoint's JSON description (config included).
        threshold: probability at or above which it trades (None: never).
        horizon: bars a trade is held.
        data_end: the last bar the model saw in training (validation included).
        warmup: bars of history its latest input needs.
        expected_net_bps: its out-of-sample net return per trade, after its costs.
        roster: its roster entry.
        encoder_key: hash of its encoder weights (coins sharing one are scored together).
        pointer: the champion pointer it was loaded from (``Fleet.load``'s ``reuse``).
    """

    symbol: str
    model_path: str
    module: FleetModule
    description: dict
    threshold: float | None
    horizon: int
    data_end: pd.Timestamp
    warmup: int
    expected_net_bps: float | None
    roster: dict
    encoder_key: str
    pointer: dict | None = None

    def judged_until(self, bar_time: pd.Timestamp) -> pd.Timestamp:
        """The last bar up to ``bar_time`` that vouches for the champion: the end of the
        windows its pointer says it was last scored on out of sample (the selection and
        the report window: a per-coin test window, a Mechanic holdout), or its training
        data's end where those are later or absent. A window ending after ``bar_time``
        (a replay of the past) vouches for nothing yet."""
        ends = [self.data_end]
        pointer = self.pointer or {}
        for window in (pointer.get("window"), (pointer.get("report") or {}).get("window")):
            if isinstance(window, list | tuple) and window:
                end = pd.Timestamp(window[-1])
                end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
                if end <= bar_time:
                    ends.append(end)
        return max(ends)

    @property
    def config(self) -> dict:
        return self.description["config"]

    @cached_property
    def input_symbols(self) -> tuple[str, ...]:
        """The symbols besides its own whose bars its inputs read (the market factor's
        members and leader channel, its level path's members)."""
        return tuple(s for s in input_symbols(self.description, [self.symbol]) if s != self.symbol)

    @cached_property
    def input_groups(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(what, symbols): each factor input whose value at a bar needs at least one of
        ``symbols`` to have a bar there. A mean or principal-component factor reads
        whichever members traded (a member without a bar counts 0, as in training), so it
        needs one of them; the leader factor and the leader channel need their symbol; a
        level factor needs one of the members it loads on, on the coin's path."""
        factor = self.description["factor"]
        groups = []
        members = tuple(factor.get("members") or ())
        if factor.get("method") == "leader" and members:
            leader = factor.get("leader")
            members = (leader if leader in members else members[0],)
        if members:
            groups.append(("market factor", members))
        lead = (factor.get("leader_channel") or {}).get("symbol")
        if lead is not None:
            groups.append(("leader channel", (lead,)))
        tree = self.description.get("tree")
        for i, level in enumerate((tree or {}).get("levels", [])[1:], start=1):
            inside = next((m for m in level["members"].values() if self.symbol in m), None)
            if inside:
                assets = level.get("assets", {})
                loaded = tuple(s for s in inside if assets.get(s, {}).get("loading", 1.0) != 0)
                groups.append((f"level {i} factor", loaded or tuple(inside)))
        return tuple(groups)

    @cached_property
    def preprocessing_key(self) -> str:
        """Coins with the same key share one feature, factor and fracdiff computation
        (with a level tree: one per cluster of the level below the first, whose members'
        bars their level channels read)."""
        cfg = self.config
        tree = self.description.get("tree")
        path = None if tree is None else FactorTree.path_of(tree, self.symbol)
        # the tree by its digest: at 400 coins a tree is tens of KB, and every coin keys on it
        digest = None if tree is None else sha256(json.dumps(tree, sort_keys=True).encode())
        levels = {} if tree is None else {"tree": digest.hexdigest(), "path": path}
        return json.dumps(
            {
                "features": cfg["features"],
                "factor": self.description["factor"],
                "n_lags": cfg["factor"]["n_lags"],
                "max_ffill": cfg["factor"]["max_ffill"],
                "leader": cfg["universe"]["dominant_symbols"][0],
                **levels,
            },
            sort_keys=True,
        )


def input_symbols(description: dict, coins: list[str]) -> list[str]:
    """The symbols whose bars the inputs of ``coins`` (sharing ``description``'s
    preprocessing) read besides each coin's own: the market factor's, then the members of
    their level paths (the coins may be among them)."""
    needed = MarketFactorExtractor.input_symbols(description["factor"])
    tree = description.get("tree")
    if tree is not None:
        needed += [s for s in FactorTree.input_symbols(tree, coins) if s not in needed]
    return needed


def dict_config(config: dict) -> DictConfig:
    """``config`` as a read-only DictConfig, built once per distinct content: building one
    takes ~15 ms, and the replay needs it for every coin at every bar and calibration
    (the champions of one run share a config)."""
    return _dict_config(json.dumps(config, sort_keys=True))


@lru_cache(maxsize=64)
def _dict_config(text: str) -> DictConfig:
    cfg = OmegaConf.create(json.loads(text))
    OmegaConf.set_readonly(cfg, True)  # shared between callers: none may change it
    return cfg


def load_coin(store: Store, entry: dict, ema_tolerance: float) -> CoinModel:
    """Reads a roster entry's champion and checkpoint; raises ModelUnusable with why not
    (another coin's version among the reasons), DataError for a malformed pointer."""
    symbol = entry["symbol"]
    pointer = read_champion(store, symbol)  # a malformed one raises DataError
    if pointer is None:
        raise ModelUnusable(f"{NO_CHAMPION} champions/{symbol}.json")
    problem = pointer_problem(store, symbol, pointer)
    if problem is not None:  # never another coin's model under this coin's name
        raise ModelUnusable(problem)
    prefix = pointer["model_path"]
    manifest = read_manifest(store, prefix)
    if manifest is None:
        raise ModelUnusable(f"{prefix} has no manifest (incomplete version)")
    files = {}
    for name in (WEIGHTS, META):
        data = store.read_bytes(f"{prefix}/{name}")
        listed = manifest["files"].get(name, {}).get("content_hash")
        if listed != content_hash(data):
            raise ModelUnusable(f"{prefix}/{name} does not match its manifest")
        files[name] = data
    module, description = module_from_files(files[WEIGHTS], files[META])
    missing = {"config", "scaler", "factor", "features", "data_end"} - set(description)
    if missing:
        raise ModelUnusable(f"{prefix}/{META} lacks {sorted(missing)}")
    if description.get("reference") is not None:  # as arrays once, not on every signal
        description["reference"] = {
            k: np.asarray(v, dtype=np.float64) for k, v in description["reference"].items()
        }
    cfg = description["config"]
    [threshold] = description.get("thresholds") or [None]
    encoder_state = module.encoder.state_dict()
    encoder_key = content_hash(b"".join(v.numpy().tobytes() for v in encoder_state.values()))
    return CoinModel(
        symbol=symbol,
        model_path=prefix,
        module=module,
        description=description,
        threshold=threshold,
        horizon=int(cfg["labels"]["horizon"]),
        data_end=pd.Timestamp(description["data_end"]),
        warmup=coin_warmup(description, ema_tolerance),
        expected_net_bps=expected_net_bps(pointer),
        roster=entry,
        encoder_key=encoder_key,
        pointer=pointer,
    )


def expected_net_bps(pointer: dict) -> float | None:
    """The champion's out-of-sample net return per trade, from its pointer's metrics."""
    metrics = pointer.get("metrics") or {}
    n_trades, net = metrics.get("n_trades"), metrics.get("net_pnl_bps")
    return net / n_trades if n_trades and net is not None else None


def trained_timeframe(description: dict) -> str:
    """The bars a model was trained on: its description's ``timeframe``, else its training
    config's ``data.timeframe``, else ``1h`` (the only bars before either was stored)."""
    data = description["config"].get("data") or {}
    return description.get("timeframe") or data.get("timeframe") or "1h"


def coin_warmup(description: dict, ema_tolerance: float) -> int:
    """Bars the latest input of this model needs: features, FFD window, factor lags."""
    cfg = description["config"]
    features = cfg["features"]
    names = features.get("names")
    windows = features.get("windows") or None
    need = warmup_bars(None if names is None else list(names), windows, ema_tolerance)
    d = description.get("fracdiff_d")
    if features.get("fracdiff") and d is not None:
        # features.fracdiff_max_window is a duration: in bars of the model's own timeframe
        bar = pd.Timedelta(trained_timeframe(description)).total_seconds()
        ffd = for_features(features, bar).with_orders([d])
        need = max(need, int(ffd.window_[0]))
    # the factor: a return (two closes), its lags, the forward fill's and volume's look-back;
    # a level tree forward-fills once more per level below the first (each level's
    # residual reads the filled factors above it)
    factor = cfg["factor"]
    tree = description.get("tree")
    fills = 1 if tree is None else len(tree["levels"])
    factor_need = 2 + factor["n_lags"] + fills * factor["max_ffill"]
    if description["factor"]["method"] == "weighted_mean":
        factor_need += int(factor["volume_window"])
    return max(need, factor_need)
