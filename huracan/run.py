"""The run behind ``python train.py``: one importable function, ``train(cfg)``.

It checks the config, loads and gates the data, and calls the pipeline the config names
(``pipeline._target_``); what the pipeline returns goes into ``summary.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections import Counter
from pathlib import Path

import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from huracan.config import build, target_of, validate
from huracan.costs.model import DEFAULT_FEE_BPS
from huracan.data import GateReport, GateThresholds, Panel, apply_fold_gates, apply_gates
from huracan.data.panel import to_utc
from huracan.errors import ConfigError, DataError
from huracan.io import atomic_write_text
from huracan.memory import fix_mmap_threshold, frozen_heap
from huracan.pipelines.base import Pipeline
from huracan.report import StageTimer, format_table
from huracan.threads import apply_threads

log = logging.getLogger("huracan")


class LibraryNoise(logging.Filter):
    """Keeps the libraries' INFO lines (Dask's scheduler, nannies and workers) and Python
    warnings (captured by ``huracan train``: numpy's RuntimeWarnings on empty slices) off
    the console; the run's log file still has them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "py.warnings":  # numpy's RuntimeWarnings and the like
            return False
        return record.levelno >= logging.WARNING or not record.name.startswith(NOISY)


NOISY = ("distributed", "lightning", "mlflow")


def quiet_libraries() -> None:
    """Keeps Lightning's per-fit banners and known harmless warnings out of the report,
    and the libraries' INFO lines out of the console (not out of the log file)."""
    for handler in logging.getLogger().handlers:
        is_console = isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        )
        if is_console and not any(isinstance(f, LibraryNoise) for f in handler.filters):
            handler.addFilter(LibraryNoise())
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    # DDP: each process says it joined, at every fit (Lightning's own console handler)
    logging.getLogger("lightning.fabric.utilities.distributed").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.accelerators.cuda").setLevel(logging.WARNING)
    for message in (
        ".*LeafSpec.*",
        ".*smaller than the logging interval.*",
        ".*does not have many workers.*",
        r".*module\(s\) in eval mode.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def output_dir_of(cfg: DictConfig) -> Path:
    """The run directory: Hydra's when run through it, else ``cfg.output_dir``."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    raise ConfigError("no run directory: run through Hydra or set output_dir=DIR")


def run_name_of(out: Path) -> str:
    """The run's TensorBoard name: its directory relative to the working directory."""
    try:
        return str(out.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return out.name


def load_and_gate(
    cfg: DictConfig, pipeline: Pipeline, timer: StageTimer
) -> tuple[Panel, GateReport]:
    """Loads the configured data, validates and aligns it, and keeps the symbols that pass."""
    with timer("data") as note:
        source = build(cfg.data)
        panel: Panel = source.load()
        fee = resolve_fee(cfg, source, panel.symbols)
        ragged = [d for d in panel.drops if d.reason == "ragged_end"]
        if ragged:  # named on the console: every window is taken back from the end
            log.warning("data: %s", ragged[0].detail)
        dropped = [  # data.on_error=drop_rows: the files' bad rows left out, the coin kept
            d for d in panel.drops if d.reason.startswith("bad_rows") and d.symbol in panel.symbols
        ]
        if dropped:
            shown = "; ".join(
                f"{d.symbol}: {d.count} {d.reason.removeprefix('bad_rows:')}" for d in dropped[:5]
            )
            more = f"; and {len(dropped) - 5} more (summary.json)" if len(dropped) > 5 else ""
            total = sum(d.count for d in dropped)
            log.warning(
                "data: %d bad row(s) dropped (data.on_error=drop_rows): %s%s", total, shown, more
            )
        cut = f"; {len(ragged)} symbol(s) cut at the ragged end" if ragged else ""
        note(f"{panel.n_assets} symbols x {panel.n_bars:,} bars of {panel.timeframe}; {fee}{cut}")
    with timer("gates") as note:
        report = GateReport()
        for drop in panel.drops:
            if drop.reason == "file_error" or (
                drop.reason.startswith("bad_rows") and drop.symbol not in panel.symbols
            ):
                report.add_skip(drop.symbol, drop.reason, drop.detail)
        options = OmegaConf.to_container(cfg.gates, resolve=True)
        until = options.pop("until", None)
        options.pop("late_coins", None)  # read by the fold loop (training.late)
        limits = GateThresholds(**options)
        starts = pipeline.fold_starts(panel, cfg) if until == PER_FOLD else []
        if starts:
            apply_fold_gates(panel, starts, limits, report)
            measured = f"bars before each of the {len(starts)} folds' first test bar"
        else:  # per_fold without out-of-sample folds (pipeline=data) measures everything
            until = None if until == PER_FOLD else gates_until(panel, cfg, pipeline, until)
            window = panel if until is None else panel.between(None, until)
            apply_gates(window, limits, report, stale=until is not None)  # before a test bar
            measured = "all bars" if until is None else f"bars before {until:%Y-%m-%d %H:%M}"
        panel = panel.select(report.passed)
        note(f"{len(report.passed)} passed, {len(report.skipped)} skipped, on {measured}")
    return panel, report


PER_FOLD = "per_fold"  # gates.until: each fold's universe gated on the bars before it


def resolve_fee(cfg: DictConfig, source, symbols: list[str]) -> str:
    """Sets ``costs.fee_bps`` where it is null: the highest taker fee among ``symbols``
    that the data source read from the exchange (``CcxtSource.taker_fee_bps``), else the
    default; a number set in the config is kept. Returns where the fee came from."""
    if cfg.costs.fee_bps is not None:
        return f"fee {cfg.costs.fee_bps:g} bps per side (config)"
    fees = getattr(source, "taker_fee_bps", None) or {}
    fees = [fees[s] for s in symbols if s in fees]
    if fees:
        cfg.costs.fee_bps = max(fees)
        if min(fees) != max(fees):
            log.warning(
                "taker fees differ across symbols (%g..%g bps): charging the highest",
                min(fees),
                max(fees),
            )
        return f"fee {cfg.costs.fee_bps:g} bps per side (exchange taker, ccxt market info)"
    cfg.costs.fee_bps = DEFAULT_FEE_BPS
    return f"fee {DEFAULT_FEE_BPS:g} bps per side (default)"


def gates_until(
    panel: Panel, cfg: DictConfig, pipeline: Pipeline, until: str | None
) -> pd.Timestamp | None:
    """Where the gates stop looking: ``auto`` is the first out-of-sample bar of the run.

    Gates choose the universe; measured on test bars, they would keep only the coins
    that turned out liquid (survivorship). ``null`` measures the whole history.
    ``per_fold`` (``load_and_gate``) measures them again before each fold's test window.
    """
    if until is None:
        return None
    if until != "auto":
        try:
            return to_utc(until)
        except ValueError:
            raise ConfigError(
                f"gates.until={until!r}: use auto, {PER_FOLD}, null or a date (2023-03-02)"
            ) from None
    return pipeline.test_start(panel, cfg)


# DDP strategies that start their processes at each fit, from this one: everything else in
# a run (data, clusters, thresholds, outputs) happens once, in this process. Lightning's
# `ddp` re-runs train.py itself in every process, which would run the whole run N times.
FIT_LAUNCHED = ("ddp_spawn", "ddp_fork", "ddp_notebook")


def check_processes(trainer: DictConfig) -> None:
    """Refuses a multi-process trainer that Huracan's training would not run correctly.

    Raises:
        ConfigError: several devices or nodes without a fit-launched DDP strategy, or
            Lightning's distributed sampler (``FoldSamples`` shares batches out itself).
    """
    strategy = trainer.get("strategy", "auto")
    if not isinstance(strategy, str):  # a strategy object from _target_: the user's choice
        return
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    if strategy not in FIT_LAUNCHED:
        if devices not in (1, "1") or nodes != 1:
            raise ConfigError(
                f"trainer.devices={devices}, trainer.num_nodes={nodes} with trainer.strategy="
                f"{strategy}: several processes need one of {', '.join(FIT_LAUNCHED)} (each "
                "fit starts them; Lightning's ddp would re-run train.py in each): use "
                "trainer=ddp_cpu or trainer=ddp"
            )
        return
    if trainer.get("use_distributed_sampler", True):
        raise ConfigError(
            f"trainer.strategy={strategy} needs trainer.use_distributed_sampler=false: each "
            "process takes its share of the one-process batches itself (as trainer=ddp_cpu "
            "and trainer=ddp set)"
        )


def preflight(cfg: DictConfig, pipeline: Pipeline) -> None:
    """What can be checked before any data is read: the GPU, the options, the services."""
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator}: no CUDA GPU on this machine "
            "(use trainer=cpu, the default)"
        )
    check_processes(cfg.trainer)
    pipeline.check(cfg)
    for group in pipeline.services:
        service = build(cfg[group])
        if hasattr(service, "check"):
            service.check()


def check_universe(panel: Panel, universe: DictConfig) -> None:
    """Raises a clear error when the gated universe cannot support a fleet run."""
    if panel.n_assets < universe.min_assets:
        raise DataError(
            "universe",
            f"{panel.n_assets} symbols passed the gates, at least {universe.min_assets} needed "
            "(see gates.json for why the others were skipped)",
        )
    missing = [s for s in universe.dominant_symbols if s not in panel.symbols]
    if universe.require_dominant and len(missing) == len(universe.dominant_symbols):
        raise DataError(
            "universe",
            f"none of the dominant symbols {list(universe.dominant_symbols)} is in the universe "
            f"({', '.join(panel.symbols[:20])}{', ...' if panel.n_assets > 20 else ''}); add "
            "them, set universe.dominant_symbols, or universe.require_dominant=false",
        )


def data_summary(panel: Panel) -> dict:
    drops = Counter()
    for drop in panel.drops:
        drops[drop.reason] += drop.count
    return {
        "n_assets": panel.n_assets,
        "n_bars": panel.n_bars,
        "timeframe": panel.timeframe,
        "start": str(panel.timestamps[0]),
        "end": str(panel.timestamps[-1]),
        "symbols": panel.symbols,
        "listed_bars": int(panel.listed.sum()),
        "dropped_or_filled": dict(drops),
    }


def train(cfg: DictConfig) -> tuple[dict, dict]:
    """Runs Huracan as configured and writes the run's outputs.

    Args:
        cfg: the composed config (``conf/config.yaml`` plus overrides).

    Returns:
        The metrics written to ``summary.json``, and the objects built (panel, gates and
        what the pipeline hands over, e.g. the hierarchical ``run``).

    Raises:
        HuracanError: bad config or data, before any training where it can be seen then.
    """
    out = output_dir_of(cfg)
    target = target_of(cfg.pipeline, "pipeline")
    if not (isinstance(target, type) and issubclass(target, Pipeline)):
        raise ConfigError(f"pipeline._target_ {cfg.pipeline._target_!r} is not a Pipeline")
    validate(cfg)
    threads = apply_threads(cfg.get("threads"))  # before any torch work
    fix_mmap_threshold()  # freed temporaries go back to the system (huracan.memory)
    pipeline: Pipeline = build(cfg.pipeline)
    preflight(cfg, pipeline)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.get("logger") is not None and cfg.logger.get("name") is None:
        cfg.logger.name = run_name_of(out)
    quiet_libraries()
    log.info(
        "torch threads: %d (threads=%s), OMP_WAIT_POLICY=%s",
        threads["torch_threads"],
        threads["setting"],
        threads["omp_wait_policy"],
    )
    # the session: e.g. the per-coin run's lock on its artifact root; the frozen heap:
    # collections scan only what the run makes (huracan.memory)
    with pipeline.session(cfg), frozen_heap():
        return run_pipeline(cfg, pipeline, out, threads)


def run_pipeline(
    cfg: DictConfig, pipeline: Pipeline, out: Path, threads: dict | None = None
) -> tuple[dict, dict]:
    """Loads and gates the data, runs the pipeline, writes ``summary.json`` (see ``train``)."""
    timer = StageTimer()
    panel, gates = load_and_gate(cfg, pipeline, timer)
    gates.write(out / "gates.json")
    log.info("gates\n%s", gates.table())
    check_universe(panel, cfg.universe)
    log.info("data\n%s", format_table(panel.summary()))
    summary = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "data": data_summary(panel),
        "gates": {"passed": len(gates.passed), "skipped": gates.skipped},
        "threads": threads,
    }
    try:
        summary |= pipeline(panel, gates, cfg, out, timer)
    except BaseException:  # why a fold failed (its universe's reasons), never in its place
        with contextlib.suppress(Exception):
            gates.write(out / "gates.json")
        raise
    gates.write(out / "gates.json")  # again: with each fold's universe, where the run has folds
    objects = {"panel": panel, "gates": gates, **summary.pop("objects", {})}
    summary["timings_s"] = timer.seconds
    if torch.cuda.is_initialized():  # trainer=gpu: this process's peak (bench/gpu.sh)
        summary["gpu_max_memory_allocated_bytes"] = torch.cuda.max_memory_allocated()
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    log.info("outputs in %s", out)
    return summary, objects


def metric_of(summary: dict, path: str | None) -> float | None:
    """A value of the summary by its dotted path (``optimized_metric``), for sweepers.

    Raises:
        ConfigError: when the path names nothing, or nothing numeric, in the summary.
    """
    if not path:
        return None
    value = summary
    for key in str(path).split("."):
        if not isinstance(value, dict) or key not in value:
            raise ConfigError(f"optimized_metric {path!r}: no {key!r} in summary.json")
        value = value[key]
    if value is None:  # no trades: the metric is undefined, the sweeper gets the worst
        return float("-inf")
    if not isinstance(value, int | float):
        raise ConfigError(f"optimized_metric {path!r} is {value!r}, not a number")
    return float(value)
