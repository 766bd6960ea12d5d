"""Encoders, grouped MoE heads and the fleet module: shapes, group isolation, checkpoints."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from huracan.models import (
    Autoencoder,
    FleetModule,
    GroupedMoEHead,
    IdentityEncoder,
    LinearEncoder,
    load_checkpoint,
    save_checkpoint,
)
from huracan.models.batches import batch_loader

F, C = 10, 3


def batch(n: int = 64, n_groups: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    factor = torch.randn(n, C, generator=gen)
    return {
        "x": torch.randn(n, F, generator=gen),
        "factor": factor,
        "group": torch.randint(0, n_groups, (n,), generator=gen),
        "y": (factor[:, 0] > 0).float(),
        "w": torch.rand(n, generator=gen) + 0.5,
    }


def quiet_trainer(**kwargs) -> pl.Trainer:
    """A trainer that writes and prints nothing."""
    return pl.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def encoders() -> dict[str, torch.nn.Module]:
    x = np.random.default_rng(0).normal(size=(200, F))
    return {
        "autoencoder": Autoencoder(F, latent_dim=4, hidden=(16,)),
        "pca": LinearEncoder.fit_pca(x, 4),
        "none": IdentityEncoder(F),
    }


@pytest.mark.parametrize("granularity,n_groups", [("global", 1), ("cluster", 3), ("coin", 400)])
@pytest.mark.parametrize("encoder_kind", ["autoencoder", "pca", "none"])
def test_shapes_for_every_head_granularity(granularity, n_groups, encoder_kind):
    encoder = encoders()[encoder_kind]
    head = GroupedMoEHead(n_groups, encoder.out_dim + C, n_experts=3, hidden=8, top_k=2)
    module = FleetModule(encoder, head)
    b = batch(n=32, n_groups=n_groups)
    logits, gate = module(b["x"], b["factor"], b["group"])
    assert logits.shape == (32,) and gate.shape == (32, 3)
    torch.testing.assert_close(gate.sum(-1), torch.ones(32))
    assert ((gate > 0).sum(-1) <= 2).all()  # top-k keeps two experts


def test_a_batch_only_updates_its_own_group():
    head = GroupedMoEHead(4, F, n_experts=2, hidden=8)
    before = {k: v.detach().clone() for k, v in head.named_parameters()}
    opt = torch.optim.Adam(head.parameters(), lr=0.1)
    x = torch.randn(16, F)
    group = torch.full((16,), 2)
    logits, gate = head(x, group)
    (logits.square().mean() + head.load_balance_loss(gate)).backward()
    opt.step()
    for name, value in head.named_parameters():
        changed = (value.detach() != before[name]).flatten(1).any(1)
        assert changed.tolist() == [False, False, True, False], name


def test_frozen_encoder_is_not_trained():
    module = FleetModule(Autoencoder(F, 4, (8,)), GroupedMoEHead(2, 4 + C), finetune_encoder=False)
    before = [p.detach().clone() for p in module.encoder.parameters()]
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(module, batch_loader(batch(256, 2), 64, shuffle=True))
    assert all(torch.equal(a, b) for a, b in zip(before, module.encoder.parameters(), strict=True))


@pytest.mark.parametrize("encoder_kind", ["autoencoder", "pca", "none"])
def test_checkpoint_round_trip_gives_identical_predictions(tmp_path, encoder_kind):
    encoder = encoders()[encoder_kind]
    module = FleetModule(encoder, GroupedMoEHead(3, encoder.out_dim + C, top_k=1))
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(module, batch_loader(batch(256, 3), 64, shuffle=True))
    meta = {
        "features": [f"f{i}" for i in range(F)],
        "cluster_map": {"BTC": 0},
        "scaler": {"mean": np.zeros((2, F))},
    }
    save_checkpoint(tmp_path / "ckpt", module, meta)
    loaded, description = load_checkpoint(tmp_path / "ckpt")
    b = batch(100, 3, seed=5)
    torch.testing.assert_close(
        module.predict_proba(b["x"], b["factor"], b["group"]),
        loaded.predict_proba(b["x"], b["factor"], b["group"]),
        rtol=0,
        atol=0,
    )
    assert description["features"] == meta["features"]
    assert (
        json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())["scaler"]["mean"][0][0] == 0
    )


def test_load_balance_loss_range():
    uniform = torch.full((8, 4), 0.25)
    collapsed = torch.zeros(8, 4)
    collapsed[:, 0] = 1
    assert GroupedMoEHead.load_balance_loss(uniform).item() == pytest.approx(0)
    assert GroupedMoEHead.load_balance_loss(collapsed).item() == pytest.approx(3)


def test_group_slice_predicts_like_its_group():
    head = GroupedMoEHead(5, F, n_experts=3, hidden=8, top_k=2)
    x = torch.randn(20, F)
    full, _ = head(x, torch.full((20,), 3))
    alone, _ = head.group_slice(3)(x, torch.zeros(20, dtype=torch.long))
    torch.testing.assert_close(full, alone, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [16, 512])  # gathered weights, and one dense pass per group
def test_only_the_batch_groups_learn_on_both_paths(n):
    head = GroupedMoEHead(4, F, n_experts=2, hidden=8)
    before = {k: v.detach().clone() for k, v in head.named_parameters()}
    opt = torch.optim.Adam(head.parameters(), lr=0.1)
    group = torch.tensor([1, 3]).repeat_interleave(n // 2)
    logits, _ = head(torch.randn(n, F), group)
    logits.square().mean().backward()
    opt.step()
    for name, value in head.named_parameters():
        changed = (value.detach() != before[name]).flatten(1).any(1)
        assert changed.tolist() == [False, True, False, True], name


@pytest.mark.parametrize("counts", [[40] * 30, [5, 90, 17, 33] * 6, [600] + [3] * 20])
def test_many_groups_in_a_flat_batch_give_the_loops_outputs_and_gradients(counts, monkeypatch):
    # 30 groups: padded stacked pass (balanced), or the loop where padding would cost more
    import huracan.models.moe as moe

    torch.manual_seed(0)
    head = GroupedMoEHead(len(counts) + 2, F, n_experts=3, hidden=8, n_outputs=2)
    group = torch.cat([torch.full((n,), g + 1) for g, n in enumerate(counts)])  # 0 unused
    group = group[torch.randperm(len(group))]
    x = torch.randn(len(group), F)

    def run(loop_groups):
        monkeypatch.setattr(moe, "_LOOP_GROUPS", loop_groups)
        head.zero_grad()
        logits, gate = head(x, group)
        (logits.square().mean() + gate[:, 0].mean()).backward()
        return logits.detach(), gate.detach(), head.w1.grad.clone(), head.gate_b.grad.clone()

    for fast, loop in zip(run(16), run(10**6), strict=True):
        torch.testing.assert_close(fast, loop, rtol=1e-5, atol=1e-6)


def test_stacked_batches_hold_every_group_in_rows_and_cover_every_sample():
    group = torch.cat([torch.full((n,), g) for g, n in [(0, 300), (2, 37), (5, 1), (6, 130)]])
    group = group[torch.randperm(len(group), generator=torch.Generator().manual_seed(1))]
    loader = batch_loader({"group": group, "i": torch.arange(len(group))}, 0, True, per_group=64)
    seen = {g: [] for g in (0, 2, 5, 6)}
    for batch in loader:
        assert batch["group"].shape == (4, 64)  # every group with samples, 64 of each
        for row_groups, row in zip(batch["group"], batch["i"], strict=True):
            assert len(torch.unique(row_groups)) == 1
            seen[int(row_groups[0])].append(row)
    assert len(loader) == 5 == -(-300 // 64)  # the largest group's samples, once each
    for g, rows in seen.items():
        rows = torch.cat(rows)
        assert (group[rows] == g).all() and len(rows) == 5 * 64
        assert set(rows.tolist()) == set((group == g).nonzero().flatten().tolist())  # all of them
    largest = torch.cat(seen[0])[:300]
    assert len(set(largest.tolist())) == 300  # each seen once per epoch


def test_stacked_batch_matches_flat_logits_and_each_group_learns_alone():
    from huracan.models import FleetModule, IdentityEncoder

    torch.manual_seed(0)
    head = GroupedMoEHead(5, 6, n_experts=3, hidden=8, n_outputs=2)
    for p in (head.b1, head.b2, head.gate_w, head.gate_b):
        torch.nn.init.normal_(p)
    x, group = torch.randn(3, 10, 6), torch.tensor([0, 2, 4])[:, None].expand(3, 10)
    stacked, gate = head(x, group)
    flat, flat_gate = head(x.reshape(30, 6), group.reshape(30))
    assert torch.allclose(stacked.reshape(30, 2), flat, atol=1e-6)
    assert torch.allclose(gate.reshape(30, 3), flat_gate, atol=1e-6)
    module = FleetModule(IdentityEncoder(4), head)
    batch = {"x": x[..., :4], "factor": x[..., 4:], "group": group, "y": (x[..., :2] > 0).float()}
    batch["w"] = torch.ones(3, 10, 2)
    batch["w"][1, 5:] = 0  # group 2 has half the weight: its loss is still its own mean
    loss, _, _ = module._losses(batch)
    alone = [module._losses({k: v[g : g + 1] for k, v in batch.items()})[0] for g in range(3)]
    assert torch.allclose(loss, torch.stack(alone).mean())


class _EveryEpoch(pl.Callback):
    """Records each epoch's validation loss and the head's weights at that moment."""

    def __init__(self):
        self.losses, self.states = [], []

    def on_validation_end(self, trainer, pl_module):
        self.losses.append(float(trainer.callback_metrics["val/loss"]))
        self.states.append({k: v.clone() for k, v in pl_module.head.state_dict().items()})


def test_heads_keep_the_best_epochs_weights_not_the_last():
    from functools import partial

    from huracan.training.fit import MoEHeads

    train, val = batch(n=512, n_groups=1, seed=1), batch(n=256, n_groups=1, seed=2)
    val["y"] = 1.0 - val["y"]  # the validation slice says the opposite: its loss rises
    recorder = _EveryEpoch()

    def make_trainer(callbacks, **kwargs):
        return pl.Trainer(
            accelerator="cpu",
            callbacks=[*callbacks, recorder],
            enable_checkpointing=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            **kwargs,
        )

    recipe = MoEHeads(granularity="global", hidden=8, lr=0.05, batch_size=64, patience=3)
    module = recipe.fit(IdentityEncoder(F), 1, train, val, partial(make_trainer), False, 0)
    best = int(np.argmin(recorder.losses))
    assert len(recorder.losses) > best + 1  # it trained past the best epoch
    assert recorder.losses[-1] > recorder.losses[best]
    for name, value in module.head.state_dict().items():
        torch.testing.assert_close(value, recorder.states[best][name])
    logits, _ = module(val["x"], val["factor"], val["group"])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, val["y"], reduction="none")
    loss = float((val["w"] * bce).sum() / val["w"].sum())
    assert loss == pytest.approx(recorder.losses[best], rel=1e-5)


def test_encoder_subsample_is_seeded_ordered_and_only_above_the_limit():
    from huracan.errors import ConfigError
    from huracan.training.fit import AutoencoderEncoder, subsample

    x = torch.arange(100.0)[:, None]
    assert subsample(x, None, 0) is x and subsample(x, 100, 0) is x
    a, b, c = subsample(x, 30, 1), subsample(x, 30, 1), subsample(x, 30, 2)
    assert len(a) == 30 and torch.equal(a, b) and not torch.equal(a, c)
    assert (a[1:, 0] > a[:-1, 0]).all() and len(set(a[:, 0].tolist())) == 30  # in order, distinct
    with pytest.raises(ConfigError, match="max_samples"):
        AutoencoderEncoder(max_samples=0)


def test_index_batches_are_the_batches_of_torchs_samplers_epoch_after_epoch():
    """Tensor batches, the same as BatchSampler(RandomSampler) from the same seed: a run's
    results do not depend on which of the two made its batches."""
    from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

    from huracan.models.batches import IndexBatches

    ours = IndexBatches(1000, 64, torch.Generator().manual_seed(3))
    random = RandomSampler(range(1000), generator=torch.Generator().manual_seed(3))
    theirs = BatchSampler(random, 64, drop_last=False)
    for _ in range(3):  # epochs
        assert [b.tolist() for b in ours] == list(theirs)
    assert len(ours) == len(theirs) == 16
    in_order = BatchSampler(SequentialSampler(range(10)), 4, drop_last=False)
    assert [b.tolist() for b in IndexBatches(10, 4)] == list(in_order)


def test_chunks_hold_the_same_batches_in_order_and_train_the_same_weights():
    """Several optimizer steps in one Lightning step: the same batches in the same order,
    the same number of optimizer steps, and bit-identical weights, flat and stacked."""
    data = batch(n=1000, n_groups=3, seed=4)
    flat = [b["x"] for b in batch_loader(data, 64, shuffle=True)]
    chunked = list(batch_loader(data, 64, shuffle=True, steps_per_call=5))
    assert [len(c) for c in chunked] == [5, 5, 5, 1]  # 16 batches
    assert all(torch.equal(a, b["x"]) for a, b in zip(flat, sum(chunked, []), strict=True))

    def trained(per_group: int | None, steps_per_call: int) -> tuple[dict, int]:
        torch.manual_seed(0)
        module = FleetModule(IdentityEncoder(F), GroupedMoEHead(3, F + C, 2, 8), lr=0.01)
        trainer = quiet_trainer(max_epochs=2)
        loader = batch_loader(data, 64, True, per_group=per_group, steps_per_call=steps_per_call)
        trainer.fit(module, loader)
        return module.head.state_dict(), trainer.global_step

    for per_group in (None, 32):
        (one, steps_one), (many, steps_many) = trained(per_group, 1), trained(per_group, 3)
        assert steps_one == steps_many == 2 * len(batch_loader(data, 64, True, per_group=per_group))
        for name, value in one.items():
            assert torch.equal(value, many[name]), name


@pytest.mark.parametrize(
    "limits,per_call",
    [
        ({}, None),
        ({"max_steps": 8}, 1),
        ({"limit_train_batches": 3}, 1),
        ({"limit_train_batches": 0.5}, 1),
        ({"val_check_interval": 0.5}, 1),
        ({"val_check_interval": 10}, 1),
        ({"val_check_interval": 10, "check_val_every_n_epoch": None}, 1),
    ],
)
def test_a_trainer_that_counts_steps_or_batches_gets_one_optimizer_step_a_call(limits, per_call):
    """Lightning counts its own steps for these settings: one optimizer step each."""
    from huracan.models.batches import STEPS_PER_CALL, FoldSamples

    data = batch(n=2000, n_groups=2)
    samples = FoldSamples(data, data, 64)
    samples.trainer = quiet_trainer(**limits)
    first = next(iter(samples.train_dataloader()))
    assert (1 if isinstance(first, dict) else len(first)) == (per_call or STEPS_PER_CALL)


@pytest.mark.parametrize("tail", [1, 7, 123])
@pytest.mark.parametrize("n_groups", [1, 3, 40])  # one dense pass, a loop, a padded stack
def test_passes_without_gradients_run_in_cache_sized_chunks_with_the_same_values(n_groups, tail):
    """A head's pass over at least two INFERENCE_CHUNKs of rows, without gradients, is
    split (huracan.models.chunks): the dense passes by rows, the padded stack by groups,
    the last chunk taking the remainder. Every value equals the unsplit pass's (with
    gradients on) to float32 rounding (the runs measured gave the same bits; a product's
    last bit may depend on its number of rows)."""
    from huracan.models.chunks import INFERENCE_CHUNK, in_chunks

    n = 2 * INFERENCE_CHUNK * min(n_groups, 3) + tail  # each of 3 groups is split too
    gen = torch.Generator().manual_seed(n_groups + tail)
    x = torch.randn(n, F + C, generator=gen)
    head = GroupedMoEHead(n_groups, F + C, n_experts=4, hidden=64, n_outputs=4).eval()
    group = torch.randint(0, n_groups, (n,), generator=gen)
    stacked = torch.randn(n_groups, 300, F + C, generator=gen)  # 300 rows a group
    index = torch.arange(n_groups)[:, None].expand(n_groups, 300)
    with torch.enable_grad():  # nothing is split
        whole = [t.detach() for t in (*head(x, group), *head(stacked, index))]
    with torch.no_grad():
        split = [*head(x, group), *head(stacked, index)]
    for a, b in zip(split, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    calls = []
    with torch.no_grad():
        in_chunks(lambda rows: calls.append(len(rows)) or rows, x[: 2 * INFERENCE_CHUNK + tail])
    assert calls == [INFERENCE_CHUNK, INFERENCE_CHUNK + tail]  # no short last chunk
    calls.clear()
    in_chunks(lambda rows: calls.append(len(rows)) or rows, x)  # gradients on: one pass
    assert calls == [n]
