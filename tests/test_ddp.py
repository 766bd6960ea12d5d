"""Lightning DDP on the CPU (``trainer=ddp_cpu``): two gloo processes train the encoder and
the heads to the same validation losses as one process, within a stated tolerance.

Every DDP process trains on its share of the same global batches a single process would
draw (``RankShare``), so the runs differ only by the order of floating-point sums and, for
the heads, by averaging the two shares' weighted means instead of taking one weighted mean.
"""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from huracan.models.batches import IndexBatches, RankShare
from huracan.training.fit import AutoencoderEncoder, MoEHeads

# Validation losses of the two runs agree to this (relative) after 8 Adam steps: the
# encoder's differ by float32 sums taken in another order (measured: equal to 1e-7), the
# heads' also by the mean of two weighted means (measured 4e-5). Lightning's own
# distributed sampler (other batches) misses both: 5e-3 and 4e-3.
ENCODER_TOLERANCE, HEADS_TOLERANCE = 1e-5, 1e-3
# debug=fast, measured: val/auroc within 5e-4, val/loss within 2e-4 (relative). The run's
# out-of-sample trades are not compared: thresholds cut near-chance probabilities, and
# differences of 1e-4 move trades across them.
AUROC_TOLERANCE = 5e-3
N_FEATURES, N_GROUPS = 12, 3


def samples(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Features with a latent structure, labels that depend on them, 3 groups."""
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 3, generator=g)
    x = latent @ torch.randn(3, N_FEATURES, generator=torch.Generator().manual_seed(99))
    x = x + 0.1 * torch.randn(n, N_FEATURES, generator=g)
    y = (latent[:, 0] + 0.5 * torch.randn(n, generator=g) > 0).float()
    return {
        "x": x,
        "factor": latent[:, :1].clone(),
        "group": torch.arange(n) % N_GROUPS,
        "y": y,
        "w": torch.rand(n, generator=g) + 0.5,
    }


def trainer_factory(option: str, max_steps: int = 8):
    with initialize_config_dir(str(ROOT / "huracan" / "conf"), version_base="1.3"):
        overrides = [f"trainer={option}", "trainer.enable_progress_bar=false"]
        cfg = compose("config", overrides=overrides)
    return instantiate(cfg.trainer, max_steps=max_steps)


def recon(encoder, val) -> float:
    with torch.no_grad():
        return float(F.mse_loss(encoder(val["x"])[1], val["x"]))


def head_loss(module, val) -> float:
    with torch.no_grad():
        logits, _ = module(val["x"], val["factor"], val["group"])
    bce = F.binary_cross_entropy_with_logits(logits, val["y"], reduction="none")
    return float((val["w"] * bce).sum() / val["w"].sum())


def test_rank_shares_split_every_batch_and_keep_tiny_ones_whole():
    batches = IndexBatches(9, batch_size=4)
    shares = [[b.tolist() for b in RankShare(batches, rank, 2)] for rank in (0, 1)]
    assert shares == [[[0, 2], [4, 6], [8]], [[1, 3], [5, 7], [8]]]
    assert len(RankShare(batches, 1, 2)) == 3
    with pytest.raises(ValueError, match="rank 2"):
        RankShare(batches, 2, 2)


@pytest.mark.parametrize("chunked", [False, True], ids=["a step a call", "8 steps a call"])
@pytest.mark.parametrize("stacked", [False, True], ids=["flat batches", "stacked batches"])
def test_ddp_cpu_trains_encoder_and_heads_like_one_process(stacked, chunked):
    """Stacked batches (many heads) give each process some heads' rows: DDP's mean then
    scales each head's gradient by a constant, which Adam's steps do not see. The 8 steps
    are one epoch: with ``max_steps`` one Lightning step each, without it one Lightning
    step of 8 optimizer steps (``Chunks``), each synchronised."""
    train, val = samples(2048, seed=0), samples(512, seed=1)
    epochs = {"max_epochs": 1} if chunked else {}
    encoder_recipe = AutoencoderEncoder(
        latent_dim=4, hidden=(16,), batch_size=256, lr=1e-2, **epochs
    )
    stacking = {"stack_above": 0, "group_batch_size": 86} if stacked else {}
    heads_recipe = MoEHeads(
        granularity="cluster", hidden=8, batch_size=256, lr=1e-2, **stacking, **epochs
    )
    losses = {}
    for option in ("cpu", "ddp_cpu"):
        make_trainer = trainer_factory(option, max_steps=-1 if chunked else 8)
        encoder = encoder_recipe.fit(train, val, make_trainer, False, seed=0)
        heads = heads_recipe.fit(encoder, N_GROUPS, train, val, make_trainer, False, seed=0)
        losses[option] = (recon(encoder, val), head_loss(heads, val))
    untrained = AutoencoderEncoder(latent_dim=4, hidden=(16,), max_epochs=0)
    initial = recon(untrained.fit(train, val, trainer_factory("cpu"), False, seed=0), val)
    # the two processes' training came back into this process: far below the initial loss
    assert losses["ddp_cpu"][0] < 0.9 * initial
    assert losses["ddp_cpu"][0] == pytest.approx(losses["cpu"][0], rel=ENCODER_TOLERANCE)
    assert losses["ddp_cpu"][1] == pytest.approx(losses["cpu"][1], rel=HEADS_TOLERANCE)


def validation_metrics(run_dir) -> pd.DataFrame:
    """The last validation values of every training stage, from the CSV logger's files."""
    rows = {}
    for path in sorted((run_dir / "logs").glob("*/*/metrics.csv")):
        values = pd.read_csv(path).filter(like="val/").dropna(how="all")
        if len(values):  # the report stage logs figures, no validation
            rows[path.parent.name] = values.iloc[-1]
    return pd.DataFrame(rows).T


def test_a_tiny_run_trains_the_same_through_train_py_with_two_processes(tmp_path):
    """debug=fast through train.py and Hydra: both folds' encoder and heads (with and
    without the factor) reach the validation metrics of the one-process run."""
    runs = {}
    for option in ("cpu", "ddp_cpu"):
        out = tmp_path / option
        command = [sys.executable, "train.py", "debug=fast", f"trainer={option}", "logger=csv"]
        command += [f"logger.save_dir={out / 'logs'}", f"hydra.run.dir={out}"]
        run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        runs[option] = validation_metrics(out)
        printed = run.stdout + run.stderr  # every line once, whatever the processes
        assert printed.count("[data]") == 1 and "Initializing distributed" not in printed
    one, two = runs["cpu"], runs["ddp_cpu"]
    assert len(one) == 6 and list(one.index) == list(two.index)  # 2 folds x 3 fits
    encoders = [s for s in one.index if s.endswith("encoder")]
    heads = [s for s in one.index if not s.endswith("encoder")]
    assert two.loc[encoders, "val/recon"].tolist() == pytest.approx(
        one.loc[encoders, "val/recon"].tolist(), rel=ENCODER_TOLERANCE
    )
    assert two.loc[heads, "val/loss"].tolist() == pytest.approx(
        one.loc[heads, "val/loss"].tolist(), rel=HEADS_TOLERANCE
    )
    assert two.loc[heads, "val/auroc"].tolist() == pytest.approx(
        one.loc[heads, "val/auroc"].tolist(), abs=AUROC_TOLERANCE
    )
