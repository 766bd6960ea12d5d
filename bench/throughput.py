"""Lightning vs a plain PyTorch loop: the same FleetModule, data, batches and optimizer."""

from __future__ import annotations

import time

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from huracan.models import Autoencoder, FleetModule, GroupedMoEHead
from huracan.models.batches import STEPS_PER_CALL, batch_loader
from huracan.models.module import HuracanModule

N_SAMPLES, N_FEATURES, N_CHANNELS, N_GROUPS = 200_000, 14, 3, 3
BATCH, EPOCHS = 2048, 3


def make_data(device: str) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    factor = torch.randn(N_SAMPLES, N_CHANNELS, generator=gen)
    data = {
        "x": torch.randn(N_SAMPLES, N_FEATURES, generator=gen),
        "factor": factor,
        "group": torch.randint(0, N_GROUPS, (N_SAMPLES,), generator=gen),
        "y": (factor[:, 0] + torch.randn(N_SAMPLES, generator=gen) > 0).float(),
        "w": torch.rand(N_SAMPLES, generator=gen) + 0.5,
    }
    return {k: v.to(device) for k, v in data.items()}


def make_module() -> FleetModule:
    torch.manual_seed(0)
    encoder = Autoencoder(N_FEATURES, 16, (64,))
    return FleetModule(encoder, GroupedMoEHead(N_GROUPS, 16 + N_CHANNELS, 4, 32), lr=2e-3)


def plain_loop(data: dict[str, torch.Tensor], device: str) -> float:
    module = make_module().to(device)
    opt = module.configure_optimizers()
    loader = batch_loader(data, BATCH, shuffle=True)
    module.train()
    module.encoder.eval()
    for epoch in range(EPOCHS + 1):  # epoch 0 warms up
        if epoch == 1:
            sync(device)
            start = time.perf_counter()
        for batch in loader:
            logits, gate = module(batch["x"], batch["factor"], batch["group"])
            bce = F.binary_cross_entropy_with_logits(logits, batch["y"], reduction="none")
            loss = (batch["w"] * bce).sum() / batch["w"].sum()
            loss = loss + module.balance_weight * module.head.load_balance_loss(gate)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    sync(device)
    return EPOCHS * N_SAMPLES / (time.perf_counter() - start)


class EpochTimer(pl.Callback):
    """From the start of epoch 1 to the end of training (after the last epoch's hooks,
    before the trainer's teardown): the epochs the plain loop's clock covers too."""

    def __init__(self, device: str):
        self.device = device
        self.start = self.stop = 0.0

    def on_train_epoch_start(self, trainer, module) -> None:
        if trainer.current_epoch == 1:
            sync(self.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, module) -> None:
        sync(self.device)
        self.stop = time.perf_counter()


def lightning_loop(data: dict[str, torch.Tensor], device: str) -> float:
    module = make_module()
    timer = EpochTimer(device)
    trainer = pl.Trainer(
        accelerator=device.replace("cuda", "gpu"),
        devices=1,
        max_epochs=EPOCHS + 1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    # The batches as FoldSamples gives them: STEPS_PER_CALL optimizer steps a Lightning step.
    trainer.fit(module, batch_loader(data, BATCH, shuffle=True, steps_per_call=STEPS_PER_CALL))
    return EPOCHS * N_SAMPLES / (timer.stop - timer.start)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def compare_throughput(accelerator: str, repeats: int = 5) -> tuple[float, float, int]:
    """Samples per second of (Lightning, plain loop), the best of ``repeats`` runs each,
    taken in turns so that both see the same machine; and the number of samples."""
    device = "cuda" if accelerator == "gpu" else "cpu"
    data = make_data(device)
    plain, lightning = [], []
    for _ in range(repeats):
        plain.append(plain_loop(data, device))
        lightning.append(lightning_loop(data, device))
    return max(lightning), max(plain), N_SAMPLES


def stacked_step_ms(threads: int, groups: int = 400, per_group: int = 128, repeats: int = 30):
    """Milliseconds of one stacked training step (forward, backward, Adam) of ``groups``
    coin heads on ``per_group`` samples each, with ``threads`` torch threads: the work
    ``huracan.threads.wide_threads`` gives every core."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        head = GroupedMoEHead(groups, 16 + N_CHANNELS, 4, 32)
        opt = torch.optim.Adam(head.parameters(), lr=2e-3)
        x = torch.randn(groups, per_group, 16 + N_CHANNELS)
        y = (torch.rand(groups, per_group) > 0.5).float()
        rows = torch.arange(groups)[:, None].expand(groups, per_group)

        def step() -> None:
            logits, _ = head(x, rows)
            loss = F.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(5):
            step()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - start)
        return 1e3 * best
    finally:
        torch.set_num_threads(before)


def flat_many_groups_ms(groups: int = 400, batch: int = 65536, repeats: int = 10) -> dict:
    """Milliseconds of one forward pass of a flat (validation) batch holding ``groups``
    heads: one padded stacked pass (the default above 16 groups) against a dense pass per
    head (what fewer groups get)."""
    from huracan.models import moe

    torch.manual_seed(0)
    head = GroupedMoEHead(groups, 16 + N_CHANNELS, 4, 32)
    x, group = torch.randn(batch, 16 + N_CHANNELS), torch.randint(0, groups, (batch,))
    times = {}
    default = moe._LOOP_GROUPS
    for name, loop_groups in (("padded stacked pass", default), ("a dense pass per head", batch)):
        moe._LOOP_GROUPS = loop_groups
        try:
            with torch.no_grad():
                head(x, group)
                best = float("inf")
                for _ in range(repeats):
                    start = time.perf_counter()
                    head(x, group)
                    best = min(best, time.perf_counter() - start)
        finally:
            moe._LOOP_GROUPS = default
        times[name] = 1e3 * best
    return times


class _Tiny(HuracanModule):
    """A module whose step costs next to nothing: what is left is the loop's own cost."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(1, 1)

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.lin(batch["w"][:1, None]).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def loop_overhead_us(
    batch: int = 256, repeats: int = 3, steps_per_call: int = 1
) -> tuple[float, float]:
    """Microseconds an optimizer step of (Lightning, a plain loop) on a near-empty module,
    best of ``repeats`` epochs over the bench data: the per-step cost of each loop itself,
    with ``steps_per_call`` optimizer steps in each Lightning step."""
    data = make_data("cpu")
    steps = N_SAMPLES // batch
    plain, lightning = [], []
    for _ in range(repeats):
        module = _Tiny()
        opt = module.configure_optimizers()
        start = time.perf_counter()
        for b in batch_loader(data, batch, shuffle=True):
            loss = module.training_loss(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
        plain.append(time.perf_counter() - start)
        trainer = pl.Trainer(
            max_epochs=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        start = time.perf_counter()
        loader = batch_loader(data, batch, shuffle=True, steps_per_call=steps_per_call)
        trainer.fit(_Tiny(), loader)
        lightning.append(time.perf_counter() - start)
    return 1e6 * min(lightning) / steps, 1e6 * min(plain) / steps


if __name__ == "__main__":  # the stacked step on 1 thread and on every core
    from huracan.threads import available_cores

    cores = available_cores()
    print("stacked step of 400 coin heads x 128 samples (best of 30)")
    for n in sorted({1, min(cores, 8)}):
        print(f"  {n} thread(s): {stacked_step_ms(n):.1f} ms")
    print("forward of a 65,536-sample flat batch of 400 heads (best of 10, torch's threads)")
    for name, ms in flat_many_groups_ms().items():
        print(f"  {name}: {ms:.1f} ms")
    print("an optimizer step of a near-empty module (batch 256, best of 3 epochs): the loops'")
    print("own cost, with 1 and with STEPS_PER_CALL optimizer steps a Lightning step")
    for per_call in (1, STEPS_PER_CALL):
        lightning_us, plain_us = loop_overhead_us(steps_per_call=per_call)
        print(f"  {per_call}: Lightning {lightning_us:.0f} us, plain loop {plain_us:.0f} us")
