"""The Mechanic's batched fine-tune (``huracan.serve.finetune``) against its one-coin
Lightning fits: the same heads up to float rounding, and the same decisions.

Unit test: heads of different sizes of training and validation data, batch sizes,
learning rates and early-stopping epochs, fitted both ways on generated samples. End to
end: one Mechanic cycle with ``mechanic.batched`` true and false on copies of a per-coin
run's store (the market of ``test_mechanic``) decides the same for every coin.
"""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import run_config
from safetensors.torch import load
from test_mechanic import MARKET, MECHANIC

from huracan.coins import part_tensors
from huracan.models import FleetModule, GroupedMoEHead
from huracan.models.encoder import Autoencoder
from huracan.pipelines.mechanic.coin import finetuned_head
from huracan.run import train
from huracan.serve.finetune import HeadFit, finetune_heads
from huracan.store import LocalStore

N_FEATURES, N_FACTOR = 6, 2
# debug=fast's trainer stops after 8 steps, which the batch does not imitate (it falls
# back to one fit per coin there): whole epochs, so that the batch is what is compared
WHOLE_EPOCHS = ["trainer.max_steps=-1", "trainer.limit_train_batches=1.0"]


def champion(seed: int, top_k: int | None) -> FleetModule:
    """A one-coin module with its own random encoder and head."""
    torch.manual_seed(seed)
    encoder = Autoencoder(N_FEATURES, latent_dim=4, hidden=(8,))
    head = GroupedMoEHead(1, 4 + N_FACTOR, n_experts=3, hidden=5, top_k=top_k)
    return FleetModule(encoder, head, lr=3e-3).eval()


def samples(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """A coin's part: inputs with a planted signal, labels, energy-like weights."""
    x = rng.normal(size=(n, N_FEATURES))
    factor = rng.normal(size=(n, N_FACTOR))
    y = (x[:, 0] + 0.5 * factor[:, 0] + rng.normal(size=n) > 0).astype(np.float64)
    return {"x": x, "factor": factor, "y": y, "w": rng.uniform(0.2, 2.0, n)}


# (train rows, val rows, batch size, learning rate, top_k): one batch an epoch, several
# with a short last one, a batch larger than the rows, a sparse gate
COINS = [(150, 40, 64, 3e-3, None), (333, 71, 32, 1e-2, 2), (90, 25, 128, 5e-4, None)]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Each coin fine-tuned in its own Lightning fit and all in one batch."""
    cfg = run_config(
        tmp_path_factory.mktemp("finetune"),
        "pipeline=mechanic",
        "trainer.enable_progress_bar=false",
        "mechanic.max_epochs=12",
        "mechanic.patience=2",
    )
    rng = np.random.default_rng(7)
    models, parts = [], []
    for i, (n_train, n_val, batch, lr, top_k) in enumerate(COINS):
        module = champion(i, top_k)
        models.append(
            SimpleNamespace(module=module, symbol=f"C{i}", config={"head": {"batch_size": batch}})
        )
        parts.append({"train": samples(rng, n_train), "val": samples(rng, n_val), "lr": lr})
    alone = []
    for model, part in zip(models, parts, strict=True):
        cfg.mechanic.lr = part["lr"]
        alone.append(finetuned_head(model, part, cfg))
    together = finetune_heads(fitted_jobs(models, parts), 12, 2, int(cfg.seed))
    models = [SimpleNamespace(**vars(m), part=p) for m, p in zip(models, parts, strict=True)]
    return models, alone, together


def fitted_jobs(models, parts=None) -> list[HeadFit]:
    parts = parts or [m.part for m in models]
    return [
        HeadFit(m.module, part_tensors(p["train"]), part_tensors(p["val"]), p["lr"], b)
        for m, p, (_, _, b, _, _) in zip(models, parts, COINS, strict=True)
    ]


def test_batched_heads_equal_the_one_coin_fits(fitted):
    models, alone, together = fitted
    for model, one, batched in zip(models, alone, together, strict=True):
        moved = False
        for name, param in one.head.named_parameters():
            other = dict(batched.head.named_parameters())[name]
            torch.testing.assert_close(other, param, atol=1e-6, rtol=1e-5, msg=name)
            moved |= not torch.equal(param, getattr(model.module.head, name))
        assert moved, f"{model.symbol}: the fine-tune changed nothing"
        assert batched.lr == one.lr and not batched.finetune_encoder
        for name, param in batched.encoder.state_dict().items():
            assert torch.equal(param, model.module.encoder.state_dict()[name])


def test_early_stopping_acts_on_the_compared_fits(fitted):
    """Without early stopping (patience beyond max_epochs) some coin ends elsewhere: the
    equality above covers coins stopped by the rule, not only runs to max_epochs."""
    models, _, together = fitted
    jobs = fitted_jobs(models)
    unstopped = finetune_heads(jobs, 12, 100, 0)
    assert any(
        not torch.equal(a.head.w1, b.head.w1) for a, b in zip(together, unstopped, strict=True)
    )


def test_no_jobs_no_work():
    assert finetune_heads([], 3, 1, 0) == []


@pytest.fixture(scope="module")
def per_coin_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    train(
        run_config(
            tmp,
            "pipeline=per_coin",
            *MARKET,
            "data.end=2023-11-01",
            "pipeline.run_id=base",
            "pipeline.test_days=20",
            "pipeline.report_days=0",
            "pipeline.champion_min_trades=3",
        )
    )
    return tmp / "artifacts"


def test_a_batched_cycle_decides_as_the_one_coin_fits(per_coin_store, tmp_path):
    reports = {}
    for batched in (True, False):
        tmp = tmp_path / str(batched)
        shutil.copytree(per_coin_store, tmp / "artifacts")
        options = [f"mechanic.batched={str(batched).lower()}", *WHOLE_EPOCHS]
        train(run_config(tmp, *MECHANIC, *options))
        reports[batched] = (
            (tmp / "run" / "mechanic.json").read_text(),
            LocalStore(tmp / "artifacts"),
        )
    batched, alone = (json.loads(reports[b][0])["coins"] for b in (True, False))
    assert batched.keys() == alone.keys()
    fitted = 0
    for symbol, one in alone.items():
        other = batched[symbol]
        assert other["status"] == one["status"], symbol
        assert other["reasons"] == one["reasons"], symbol
        if one["status"] == "skipped":
            continue
        fitted += 1
        assert other["challenger"]["n_trades"] == one["challenger"]["n_trades"], symbol
        for key in ("threshold", "sharpe", "net_pnl_bps"):
            assert other["challenger"][key] == pytest.approx(one["challenger"][key], abs=1e-4)
        prefix = one["challenger_path"]
        weights = [load(reports[b][1].read_bytes(f"{prefix}/weights.safetensors")) for b in (1, 0)]
        for name, value in weights[1].items():
            torch.testing.assert_close(weights[0][name], value, atol=2e-5, rtol=1e-4)
    assert fitted, "no coin was fine-tuned: the comparison says nothing"


def test_a_trainer_limiting_steps_fits_each_coin_alone(tmp_path):
    from huracan.pipelines.mechanic.coin import unbatchable

    limited = run_config(tmp_path, *MECHANIC).trainer
    assert unbatchable(limited) == "trainer.max_steps=8, trainer.limit_train_batches=8"
    assert unbatchable(run_config(tmp_path, *MECHANIC, *WHOLE_EPOCHS).trainer) is None
