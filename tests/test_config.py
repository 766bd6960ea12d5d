"""The config: every option composes with Hydra, names a _target_, and is checked before work."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from huracan.config import build, check_component, target_of, validate
from huracan.errors import ConfigError
from huracan.loggers import stage_logger
from huracan.pipelines.base import Pipeline
from huracan.run import metric_of, train

COMPONENT_GROUPS = [
    "data",
    "cluster",
    "factor",
    "encoder",
    "head",
    "pipeline",
    "trainer",
    "queue",
    "store",
    "logger",
    "book",
]
OPTIONS = [
    (group, path.stem)
    for group in COMPONENT_GROUPS
    for path in sorted((ROOT / "huracan" / "conf" / group).glob("*.yaml"))
]
REQUIRED = {"data=csv": ["data.path=/some/where"]}


def config(*overrides: str):
    with initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_every_group_has_options():
    assert {group for group, _ in OPTIONS} == set(COMPONENT_GROUPS)
    assert len(OPTIONS) >= 28


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_names_its_component_and_passes_the_checks(group, option):
    choice = f"{group}={option}"
    cfg = config(choice, *REQUIRED.get(choice, []))
    node = cfg[group]
    target = target_of(node, group)  # imports the class or function it names
    assert callable(target)
    check_component(node, group)  # every key is an option of the target, of the right type
    validate(cfg)


@pytest.mark.parametrize(
    "group", ["cluster", "factor", "encoder", "head", "pipeline", "queue", "logger", "book"]
)
def test_cheap_components_build_from_each_option(group, tmp_path):
    for path in sorted((ROOT / "huracan" / "conf" / group).glob("*.yaml")):
        component = build(config(f"{group}={path.stem}")[group])
        if group == "pipeline":
            assert isinstance(component, Pipeline)
        if group == "logger":
            assert callable(component)  # a factory: each stage gets its own run


def test_variants_override_their_base_file_instead_of_copying_it():
    for variant, base in [
        ("cluster/average", "cluster/ward"),
        ("cluster/complete", "cluster/ward"),
        ("cluster/isolated", "cluster/global"),
        ("factor/mean", "factor/pca"),
        ("factor/weighted_mean", "factor/pca"),
        ("factor/none", "factor/pca"),
        ("factor/leader", "factor/pca"),
        ("head/coin", "head/cluster"),
        ("head/global", "head/cluster"),
        ("book/long_short", "book/long_only"),
    ]:
        text = (ROOT / "huracan" / "conf" / f"{variant}.yaml").read_text()
        assert f"- {base.split('/')[1]}\n" in text, variant
        assert len([line for line in text.splitlines() if ":" in line]) <= 4, variant


def test_option_files_carry_only_keys_their_component_reads():
    pca = config("encoder=pca").encoder
    assert set(pca) == {"_target_", "latent_dim"}
    assert set(config("encoder=none").encoder) == {"_target_"}
    assert "volume_window" not in config("factor=pca").factor
    assert "n_clusters" not in config("cluster=global").cluster


def test_per_coin_selects_coin_heads_through_its_defaults():
    assert config("pipeline=per_coin").head.granularity == "coin"
    assert config().head.granularity == "cluster"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.n_assets=abc"], "data.n_assets: expected int, got 'abc'"),
        (["head.granularity=asset"], "head.granularity: expected one of"),
        (["data=csv"], "data.path is required"),
        (["encoder.latent_dim=1.5"], "encoder.latent_dim: expected int"),
        (["cluster=average", "+cluster.linkage=single"], "cluster.linkage is not an option"),
        (["cluster.n_clusters=abc"], "cluster.n_clusters: expected int or one of 'auto'"),
        (["cluster.series=prices"], "cluster.series: expected one of 'returns'"),
        (["cluster=global", "cluster.series=prices"], "cluster.series: expected one of"),
        (["pipeline=per_coin", "pipeline.heads=both"], "pipeline.heads: expected one of"),
        (["pipeline=per_coin", "head=cluster"], "one head per coin"),
        (["labels.horizon=abc"], "labels.horizon: expected int"),
        (["validation.n_folds=2.5"], "validation.n_folds: expected int"),
        (["thresholds.cut_z=-1"], "thresholds.cut_z must be >= 0 or null"),
        (["thresholds.gate=bonferroni"], "thresholds.gate: expected one of"),
        (["thresholds.family_alpha=1.5"], "thresholds.family_alpha must be in"),
        (["thresholds.resamples=5"], "thresholds.resamples must be >= 20"),
        (["thresholds.unit=trade"], "family-wise thresholds.gate needs thresholds.unit=day"),
        (
            ["pipeline=per_coin", "thresholds.unit=trade"],
            "family-wise thresholds.gate needs thresholds.unit=day",
        ),
        (["+gates.min_volume=1"], "gates.min_volume is not an option"),
        (["pipeline=per_coin", "pipeline.costs.z=abc"], "pipeline.costs.z: expected float"),
        (["pipeline=per_coin", "pipeline.costs.estimator=roll"], "pipeline.costs.estimator"),
        (["pipeline=per_coin", "pipeline.costs.tiers=[]"], "tiers is empty"),
        (["pipeline=per_coin", "queue.workers=0"], "queue workers must be at least 1"),
        (["data=ccxt", "data.on_error=bogus"], "data.on_error: expected one of"),
    ],
)
def test_bad_values_stop_the_run_before_any_data_is_read(tmp_path, overrides, message):
    cfg = config(f"+output_dir={tmp_path}", *overrides)
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not (tmp_path / "gates.json").exists()  # nothing was loaded


def test_a_constructor_s_own_config_error_reaches_the_user(tmp_path, monkeypatch):
    """Hydra wraps what a constructor raises; the user still gets our one-line error."""
    for name in ("DROPBOX_ACCESS_TOKEN", "DROPBOX_REFRESH_TOKEN", "DROPBOX_APP_KEY"):
        monkeypatch.delenv(name, raising=False)
    cfg = config(f"+output_dir={tmp_path}", "pipeline=per_coin", "store=dropbox")
    with pytest.raises(ConfigError, match="DROPBOX"):
        train(cfg)
    assert not (tmp_path / "gates.json").exists()


def test_dates_given_as_numbers_are_accepted():
    validate(config("data=csv", "data.path=/some/where", "data.start=2024"))


def test_logger_null_logs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert stage_logger(config("~logger"), "fold0") is False  # Lightning: no logger


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_trainer_without_a_gpu_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        train(config(f"+output_dir={tmp_path}", "trainer=gpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_ddp_gpu_trainer_without_a_gpu_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        train(config(f"+output_dir={tmp_path}", "trainer=ddp", "trainer.num_nodes=2"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.devices=2"], "several processes need one of ddp_spawn"),
        (["+trainer.num_nodes=2", "+trainer.strategy=ddp"], "re-run train.py"),
        (["trainer=ddp_cpu", "trainer.use_distributed_sampler=true"], "sampler=false"),
    ],
)
def test_multi_process_trainers_that_would_run_wrong_are_refused(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(config(f"+output_dir={tmp_path}", "pipeline=data", *overrides))
    assert not (tmp_path / "gates.json").exists()


def test_unknown_pipeline_target_is_an_error_not_a_data_only_run(tmp_path):
    cfg = config(f"+output_dir={tmp_path}", "pipeline._target_=huracan.pipelines.nope.Nope")
    with pytest.raises(ConfigError, match="cannot import"):
        train(cfg)
    cfg = config(f"+output_dir={tmp_path}", "pipeline._target_=huracan.run.train")
    with pytest.raises(ConfigError, match="is not a Pipeline"):
        train(cfg)


def test_unreachable_dask_scheduler_ends_the_command_with_one_line(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "train.py",
            "pipeline=per_coin",
            "queue=dask",
            "queue.address=tcp://127.0.0.1:1",
            f"store.root={tmp_path / 'art'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 2
    assert "ConfigError: queue.address 'tcp://127.0.0.1:1': no Dask scheduler answers" in output
    assert "Traceback" not in output
    assert not (tmp_path / "run" / "gates.json").exists()


def test_experiment_presets_compose():
    binance = config("experiment=fleet_binance")
    assert binance.data._target_.endswith("CsvSource")
    assert binance.data.path == "../shared/data/binance_spot/1h"
    validate(binance)
    large = config("experiment=per_coin_400")
    assert large.pipeline._target_.endswith("PerCoinPipeline") and large.data.n_assets == 400
    assert large.head.granularity == "coin"
    validate(large)


@pytest.mark.parametrize("option", ["csv", "mlflow", "tensorboard"])
def test_each_logger_writes_its_run_with_the_config(tmp_path, option, monkeypatch):
    if option == "mlflow":
        pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)  # mlflow's file store is ./mlruns
    cfg = config(f"logger={option}", "logger.name=test")
    if "save_dir" in cfg.logger:
        cfg.logger.save_dir = str(tmp_path / "logs")
    logger = stage_logger(cfg, "fold0")
    logger.log_metrics({"val/loss": 0.5}, step=0)
    logger.finalize("success")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written, f"logger={option} wrote nothing"
    if option == "csv":
        hparams = (tmp_path / "logs" / "test" / "fold0" / "hparams.yaml").read_text()
        assert "head/granularity: cluster" in hparams
        assert "val/loss" in (tmp_path / "logs" / "test" / "fold0" / "metrics.csv").read_text()


def test_metric_of_reads_the_summary_by_path():
    summary = {"clusters": {"all": {"model": {"sharpe": 1.5, "precision": None}}}}
    assert metric_of(summary, "clusters.all.model.sharpe") == 1.5
    assert metric_of(summary, "clusters.all.model.precision") == float("-inf")
    assert metric_of(summary, None) is None
    with pytest.raises(ConfigError, match="no 'nope'"):
        metric_of(summary, "clusters.nope")


def test_optuna_sweep_gets_the_objective_from_train(tmp_path):
    """Two Optuna trials; each trial's return value is the metric the sweeper optimises."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    run = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "hparams_search=optuna",
            "pipeline=data",
            "data.years=0.3",
            "optimized_metric=data.n_assets",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            "data.n_assets=choice(4,6)",  # joins the preset's search space
            f"hydra.sweep.dir={tmp_path}",
            "hydra.callbacks={}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    best = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert best.best_value in (4, 6)
    assert best.best_params["data.n_assets"] == best.best_value
    summaries = [json.loads(p.read_text()) for p in tmp_path.glob("*/summary.json")]
    assert len(summaries) == 2


def test_debug_fast_runs_the_whole_per_coin_pipeline(tmp_path):
    cfg = config(
        f"+output_dir={tmp_path / 'run'}",
        "debug=fast",
        "pipeline=per_coin",
        f"store.root={tmp_path / 'art'}",
        f"logger.save_dir={tmp_path / 'tb'}",
    )
    summary, _ = train(cfg)
    assert summary["per_coin"]["counts"]["completed"] == 6
    assert summary["config"]["head"]["granularity"] == "coin"
    checkpoint = next((tmp_path / "art" / "models").rglob("checkpoint.json"))
    assert json.loads(checkpoint.read_text())["config"]["head"]["granularity"] == "coin"


def test_daily_and_4h_presets_compose_with_windows_sized_in_their_bars():
    """experiment=daily_binance counts in days, h4_binance in 4-hour bars: each window the
    hourly default counts in hours spans the same stretch of time or a stated longer one."""
    daily = config("experiment=daily_binance")
    validate(daily)
    assert daily.data.path == "../shared/data/binance_spot/1d"
    assert list(daily.labels.horizons) == [1, 3, 7, 14]  # days
    assert (daily.labels.vol_window, daily.features.windows.volatility) == (20, 20)
    assert daily.gates.max_gap_bars == 2 and daily.cluster.min_overlap == 60
    assert set(daily.baselines.extra) == {"lightgbm", "momentum", "reversal"}
    h4 = config("experiment=h4_binance")
    validate(h4)
    assert (h4.data.timeframe, h4.data.partial_bars) == ("4h", "missing")
    assert [h * 4 for h in h4.labels.horizons] == [4, 12, 24, 72]  # hours
    assert h4.gates.max_gap_bars * 4 == 48  # hours, as the hourly default's 48 bars
    default = config()
    assert list(default.baselines.extra) == []  # opt-in on the hourly default
    shown = subprocess.run(
        [sys.executable, "train.py", "experiment=daily_binance", "--cfg", "job"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    job = yaml.safe_load(shown.stdout)
    assert job["labels"]["horizons"] == [1, 3, 7, 14]
    assert job["features"]["windows"]["return_horizons"] == [1, 7, 28]
    assert job["costs"]["slippage_bps_per_sigma"] == 0.2
