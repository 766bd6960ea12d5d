"""Many champions' heads fine-tuned at once, encoders frozen: one stacked tensor program.

The Mechanic fine-tunes every champion's head on its coin's new bars. One Lightning fit per
coin costs about as much in Lightning's own machinery as in arithmetic (a fit of a few
hundred rows is a few dozen optimizer steps), so 400 coins spend minutes per cycle.
``finetune_heads`` trains the same heads as those fits, all coins in each step: the heads
stacked along the group axis (as serving's ``_stack_heads`` stacks them to score), every
coin's batch a row of one stacked batch, the frozen encoders' codes computed once.

Each coin gets what its own fit would give, up to float rounding:

* the same batches: its rows shuffled by its own generator seeded with ``seed``, drawn
  as ``IndexBatches`` draws them (two permutations an epoch, the first used), cut into
  its own ``batch_size``; a coin with fewer batches than the largest sits the rest of the
  epoch out;
* the same loss (``FleetModule``'s weighted BCE plus ``balance_weight`` times its
  experts' balance loss), on its own rows only: the stacked loss is the sum of the coins'
  losses, so each coin's gradient is its own;
* the same optimizer: Adam (PyTorch's defaults, the coin's learning rate), its moments
  and step count per coin, a coin that sits out a step leaves them untouched;
* the same early stopping: after each epoch its validation loss (the weighted BCE over
  its validation rows in slices of 65,536, their mean weighted by size, as Lightning
  logs ``val/loss``), stopped after ``patience`` epochs without a lower one or at a
  non-finite one (``EarlyStopping``), its best epoch's weights kept (``BestWeights``).

Why a plain loop and not a Lightning fit: one Lightning fit has one optimizer step count
per parameter tensor and one ``should_stop``, while here each coin keeps its own step
count (Adam's bias correction), its own epochs' length and its own stopping epoch; those
are per-row state of the stacked tensors, which the loop below keeps explicitly. The
per-coin path (``mechanic.batched=false``) stays a Lightning fit;
``tests/test_finetune.py`` checks that both give the same weights and decisions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from huracan.models import FleetModule, GroupedMoEHead
from huracan.models.checkpoint import head_spec

VAL_BATCH = 65536  # FoldSamples' validation batch: the slices Lightning averages over
BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, as FleetModule uses it


@dataclass(frozen=True)
class HeadFit:
    """One coin's fine-tuning job.

    Attributes:
        module: the champion (its weights left unchanged; the result is a copy that
            shares its frozen encoder, ``_with_head``).
        train, val: samples as ``sample_tensors`` gives them (``x``, ``factor``, ``y``,
            ``w``; ``group`` is ignored: one head per coin).
        lr: Adam's learning rate.
        batch_size: training samples per step.
    """

    module: FleetModule
    train: dict[str, torch.Tensor]
    val: dict[str, torch.Tensor]
    lr: float
    batch_size: int


def finetune_heads(
    fits: list[HeadFit],
    max_epochs: int,
    patience: int,
    seed: int,
    device: str | torch.device = "cpu",
) -> list[FleetModule]:
    """Every job's head fine-tuned (encoder frozen), in the jobs' order.

    Jobs whose heads have the same shape train in one stacked program; each returned
    module is a copy of the job's champion with the new head, ``lr`` set and the encoder
    frozen, on the CPU in eval mode.

    Raises:
        ValueError: a champion's head has several groups (a coin's head has one).
    """
    by_shape: dict[str, list[int]] = {}
    for i, fit in enumerate(fits):
        if fit.module.head.n_groups != 1:
            raise ValueError(f"job {i}: a head of {fit.module.head.n_groups} groups, not one")
        by_shape.setdefault(str(sorted(head_spec(fit.module.head).items())), []).append(i)
    tuned: list[FleetModule | None] = [None] * len(fits)
    for members in by_shape.values():
        jobs = [fits[i] for i in members]
        heads = _Stack(jobs, max_epochs, patience, seed, torch.device(device)).fit()
        for i, job, params in zip(members, jobs, heads, strict=True):
            tuned[i] = _with_head(job, params)
    return tuned


class _Stack:
    """Same-shape jobs as one stacked head, their samples padded to the largest."""

    def __init__(self, jobs: list[HeadFit], max_epochs, patience, seed, device):
        self.jobs, self.max_epochs, self.patience, self.device = jobs, max_epochs, patience, device
        spec = head_spec(jobs[0].module.head)
        self.head = GroupedMoEHead(**{**spec, "n_groups": len(jobs)}).to(device)
        with torch.no_grad():
            for name, param in self.head.named_parameters():
                param.copy_(torch.cat([getattr(j.module.head, name) for j in jobs]))
        self.train = _padded([_codes(j.module, j.train) for j in jobs], device)
        self.val = _padded([_codes(j.module, j.val) for j in jobs], device)
        self.lr = torch.tensor([j.lr for j in jobs], dtype=torch.float64)
        self.balance = torch.tensor(
            [j.module.balance_weight for j in jobs], dtype=torch.float32, device=device
        )
        self.sizes = [len(j.train["y"]) for j in jobs]
        self.batch = [int(j.batch_size) for j in jobs]
        self.generators = [torch.Generator().manual_seed(seed) for _ in jobs]
        params = list(self.head.parameters())
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
        self.steps = torch.zeros(len(jobs), dtype=torch.float64)

    def fit(self) -> list[dict[str, torch.Tensor]]:
        """Each job's best-epoch head parameters (one-group slices, on the CPU)."""
        n = len(self.jobs)
        best = torch.full((n,), float("inf"))
        wait = torch.zeros(n, dtype=torch.int64)
        running = torch.ones(n, dtype=torch.bool)
        # the best epoch's weights (BestWeights); the last epoch's where none was finite
        kept = {k: p.detach().clone() for k, p in self.head.named_parameters()}
        for _ in range(self.max_epochs):
            if not running.any():
                break
            self._epoch(running)
            loss = self._val_loss()
            finite = torch.isfinite(loss)
            better = running & finite & (loss < best)
            never = running & torch.isinf(best) & ~better  # no best epoch yet: keep the last
            with torch.no_grad():
                for name, param in self.head.named_parameters():
                    rows = (better | never).to(self.device)
                    kept[name][rows] = param[rows]
            best = torch.where(better, loss, best)
            wait = torch.where(better, 0, torch.where(running, wait + 1, wait))
            running &= finite & (wait < self.patience)
        return [{k: v[g : g + 1].cpu() for k, v in kept.items()} for g in range(n)]

    def _epoch(self, running: torch.Tensor) -> None:
        """One epoch of every running job: its batches in its own shuffled order."""
        orders = []
        for g, generator in enumerate(self.generators):
            if running[g]:  # IndexBatches' draws: this epoch's order, then an unused one
                order = torch.randperm(self.sizes[g], generator=generator)
                torch.randperm(self.sizes[g], generator=generator)
                orders.append(order.split(self.batch[g]))
            else:
                orders.append(())
        for step in range(max(len(o) for o in orders)):
            active = [g for g, o in enumerate(orders) if step < len(o)]
            width = max(len(orders[g][step]) for g in active)  # the longest batch, no more
            rows = torch.zeros(len(active), width, dtype=torch.int64)
            mask = torch.zeros(len(active), width, dtype=torch.bool)
            for i, g in enumerate(active):
                batch = orders[g][step]
                rows[i, : len(batch)], mask[i, : len(batch)] = batch, True
            self._step(torch.tensor(active), rows.to(self.device), mask.to(self.device))

    def _step(self, active: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor) -> None:
        """One Adam step of the ``active`` jobs, each on its ``rows`` (``mask``: real)."""
        groups = active.to(self.device)
        pick = groups[:, None]
        inputs, y, w = (self.train[k][pick, rows] for k in ("inputs", "y", "w"))
        self.head.zero_grad(set_to_none=True)
        logits, gate = self.head(inputs, pick.expand_as(rows))  # (A, b), (A, b, K)
        w = w * mask
        bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        loss = (w * bce).sum(1) / w.sum(1).clamp_min(1e-12)
        share = (gate * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (A, K)
        balance = gate.shape[-1] * (share**2).sum(-1) - 1
        (loss + self.balance[groups] * balance).sum().backward()  # each job's own gradient
        self._adam(active)

    @torch.no_grad()
    def _adam(self, active: torch.Tensor) -> None:
        """``torch.optim.Adam``'s update on the active jobs' rows, their own step counts."""
        self.steps[active] += 1
        step = self.steps[active]
        size = (self.lr[active] / (1 - BETAS[0] ** step)).float().to(self.device)
        root = torch.sqrt(1 - BETAS[1] ** step).float().to(self.device)
        index = active.to(self.device)
        for param, (mean, square) in zip(self.head.parameters(), self.moments, strict=True):
            grad = param.grad[index]
            shape = (-1,) + (1,) * (param.ndim - 1)
            m = mean[index].lerp_(grad, 1 - BETAS[0])
            v = square[index].mul_(BETAS[1]).addcmul_(grad, grad, value=1 - BETAS[1])
            denom = (v.sqrt() / root.view(shape)).add_(EPS)
            mean[index], square[index] = m, v
            param[index] = param[index] - size.view(shape) * m / denom

    @torch.no_grad()
    def _val_loss(self) -> torch.Tensor:
        """Each job's validation loss (CPU, float32), Lightning's size-weighted mean over
        validation batches of ``VAL_BATCH``."""
        val = self.val
        n, width = val["y"].shape
        groups = torch.arange(n, device=self.device)[:, None].expand(n, width)
        logits, _ = self.head(val["inputs"], groups)
        bce = F.binary_cross_entropy_with_logits(logits, val["y"], reduction="none")
        w = val["w"] * val["mask"]
        chunk = torch.arange(width, device=self.device) // VAL_BATCH
        chunks = int(chunk[-1]) + 1
        sums = torch.zeros(n, chunks, 3, device=self.device)
        parts = torch.stack([w * bce, w, val["mask"].float()], -1)  # (G, V, 3)
        sums.index_add_(1, chunk, parts)
        loss = sums[..., 0] / sums[..., 1].clamp_min(1e-12)  # (G, chunks)
        count = sums[..., 2]
        if chunks == 1:
            return loss[:, 0].cpu()
        return ((loss * count).sum(1) / count.sum(1)).cpu()


def _codes(module: FleetModule, samples: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The head's inputs (frozen encoder's codes beside the factor channels), labels, weights."""
    encoder = module.encoder.eval()
    with torch.no_grad():
        z = encoder.encode(samples["x"])  # (M, F) -> (M, L)
    return {"inputs": torch.cat([z, samples["factor"]], -1), "y": samples["y"], "w": samples["w"]}


def _padded(parts: list[dict[str, torch.Tensor]], device) -> dict[str, torch.Tensor]:
    """The jobs' samples as (G, M_max, ...) tensors, zeros after each job's own, ``mask``."""
    width = max(len(p["y"]) for p in parts)
    out = {}
    for key in ("inputs", "y", "w"):
        first = parts[0][key]
        table = first.new_zeros((len(parts), width, *first.shape[1:]))
        for g, part in enumerate(parts):
            table[g, : len(part[key])] = part[key]
        out[key] = table.to(device)
    lengths = torch.tensor([len(p["y"]) for p in parts])
    out["mask"] = (torch.arange(width)[None] < lengths[:, None]).to(device)
    return out


def _with_head(job: HeadFit, params: dict[str, torch.Tensor]) -> FleetModule:
    """A copy of the job's champion carrying the fine-tuned head, as the per-coin fit
    leaves it (encoder frozen, ``lr`` the fine-tune's).

    The copy shares the champion's encoder and validation metrics, which most of a whole
    copy's time went to: the encoder is frozen (no step here reaches it, its codes are
    computed once without gradients; freezing it below sets the champion's flags as a
    frozen encoder's, which serving, under ``no_grad``, never reads), and the metrics are
    Lightning's validation state, which a challenger exported from here never runs (nor
    carries: checkpoints leave it out)."""
    champion = job.module
    shared = {
        id(champion.encoder): champion.encoder,
        id(champion.val_metrics): champion.val_metrics,
    }
    module = copy.deepcopy(champion, shared)
    module.finetune_encoder = False
    module.encoder.requires_grad_(False)
    module.lr = job.lr
    with torch.no_grad():
        for name, param in module.head.named_parameters():
            param.copy_(params[name])
    return module.cpu().eval()
