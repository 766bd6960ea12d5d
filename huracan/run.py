"""The run behind ``python train.py``: one importable function, ``train(cfg)``."""

from __future__ import annotations

import json
import logging
import warnings
from collections import Counter
from pathlib import Path

import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from huracan.data import GateReport, GateThresholds, Panel, apply_gates
from huracan.data.panel import to_utc
from huracan.errors import ConfigError, DataError
from huracan.io import atomic_write_text
from huracan.report import StageTimer, format_table

log = logging.getLogger("huracan")


def quiet_libraries() -> None:
    """Keeps Lightning's per-fit banners and known harmless warnings out of the report."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
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


def load_and_gate(cfg: DictConfig, timer: StageTimer) -> tuple[Panel, GateReport]:
    """Loads the configured data, validates and aligns it, and keeps the symbols that pass."""
    with timer("data") as note:
        panel: Panel = instantiate(cfg.data).load()
        note(f"{panel.n_assets} symbols x {panel.n_bars:,} bars of {panel.timeframe}")
    with timer("gates") as note:
        report = GateReport()
        for drop in panel.drops:
            if drop.reason == "file_error" or (
                drop.reason.startswith("bad_rows") and drop.symbol not in panel.symbols
            ):
                report.add_skip(drop.symbol, drop.reason, drop.detail)
        options = OmegaConf.to_container(cfg.gates, resolve=True)
        until = gates_until(panel, cfg, options.pop("until", None))
        seen = panel if until is None else panel.between(None, until)
        apply_gates(seen, GateThresholds(**options), report)
        panel = panel.select(report.passed)
        measured = "all bars" if until is None else f"bars before {until:%Y-%m-%d %H:%M}"
        note(f"{len(report.passed)} passed, {len(report.skipped)} skipped, on {measured}")
    return panel, report


def gates_until(panel: Panel, cfg: DictConfig, until: str | None) -> pd.Timestamp | None:
    """Where the gates stop looking: ``auto`` is the first out-of-sample bar of the run.

    Gates choose the universe; measured on test bars, they would keep only the coins
    that turned out liquid (survivorship). ``null`` measures the whole history.
    """
    if until is None:
        return None
    if until != "auto":
        return to_utc(until)
    if cfg.pipeline.name == "hierarchical":
        test_size = panel.n_bars // (cfg.validation.n_folds + 1)
        return panel.timestamps[panel.n_bars - cfg.validation.n_folds * test_size]
    if cfg.pipeline.name == "per_coin":
        test_size = int(round(cfg.pipeline.test_days * 86400 / panel.bar_seconds))
        return panel.timestamps[max(panel.n_bars - test_size, 1)]
    return None


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
        The metrics written to ``summary.json``, and the objects built (panel, gates, run).
    """
    out = output_dir_of(cfg)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.get("logging") and cfg.logging.run_name is None:
        cfg.logging.run_name = run_name_of(out)
    quiet_libraries()
    timer = StageTimer()
    panel, gates = load_and_gate(cfg, timer)
    gates.write(out / "gates.json")
    log.info("gates\n%s", gates.table())
    check_universe(panel, cfg.universe)
    log.info("data\n%s", format_table(panel.summary()))
    summary = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "data": data_summary(panel),
        "gates": {"passed": len(gates.passed), "skipped": gates.skipped},
    }
    objects = {"panel": panel, "gates": gates}
    if cfg.pipeline.name == "hierarchical":
        summary |= run_fleet(panel, cfg, out, timer, objects)
    elif cfg.pipeline.name == "per_coin":
        from huracan.pipelines.per_coin import run_per_coin

        summary |= run_per_coin(panel, gates, cfg, out, timer)
    summary["timings_s"] = timer.seconds
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    log.info("outputs in %s", out)
    return summary, objects


def run_fleet(panel: Panel, cfg: DictConfig, out: Path, timer: StageTimer, objects: dict) -> dict:
    """The hierarchical pipeline, its console report, and its part of summary.json."""
    from lightning.pytorch.loggers import TensorBoardLogger

    from huracan.pipelines.fleet_report import write_report
    from huracan.pipelines.hierarchical import run_hierarchical

    run = run_hierarchical(panel, cfg, out, timer)
    logger = TensorBoardLogger(
        cfg.logging.tensorboard_dir,
        name=cfg.logging.run_name,
        version="report",
        default_hp_metric=False,
    )
    with timer("report"):
        report = write_report(run, panel, cfg, out, logger)
    objects["run"] = run
    log_report(report, cfg)
    overall = report["clusters"]["all"]["model"]
    logger.log_hyperparams(
        _flat(OmegaConf.to_container(cfg, resolve=True)),
        {f"hp/{k}": v for k, v in overall.items() if isinstance(v, int | float)},
    )
    logger.finalize("success")
    return {
        "clusters": report["clusters"],
        "cluster_agreement": report["cluster_agreement"],
        "folds": report["folds"],
        "per_fold": json.loads(report["per_fold"].to_json(orient="index")),
        "criteria": report["criteria"],
    }


def log_report(report: dict, cfg: DictConfig) -> None:
    """The console report: clusters, per-asset table, per-cluster table, criteria."""
    results = report["results"].set_index("asset")
    log.info("out-of-sample results per asset (after costs)\n%s", format_table(results))
    rows = []
    for name, entry in report["clusters"].items():
        for variant in ("model", "without_factor", "oracle"):
            if variant in entry:
                rows.append({"group": name, "variant": variant, **entry[variant]})
    table = pd.DataFrame(rows).set_index(["group", "variant"])
    log.info("per cluster (pooled trades, after costs)\n%s", format_table(table, max_rows=80))
    log.info("per fold (all assets' test-window trades)\n%s", format_table(report["per_fold"]))
    lines = [f"  {c['result']}  {c['name']}: {c['value']}" for c in report["criteria"]]
    log.info("success criteria\n%s", "\n".join(lines))


def _flat(tree: dict, prefix: str = "") -> dict:
    """Nested config as flat ``a/b`` keys with scalar values, for TensorBoard hparams."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flat(value, f"{name}/")
        else:
            flat[name] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat
