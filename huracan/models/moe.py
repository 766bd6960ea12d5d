"""Mixture-of-experts heads with one parameter set per group (cluster, coin or global).

All groups live in one module: each weight has a leading group axis, and a sample's group
index selects its parameters in a batched operation. 400 coin heads therefore train in one
pass, and a batch only produces gradients for the groups it contains. A *stacked* batch
(inputs ``(G', b, in)``, row ``g`` all of one group) trains many groups at once with
batched matrix products: no gather of a weight copy per sample, no loop over groups.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from huracan.models.chunks import in_chunks

# Up to this many groups in a flat batch, one dense pass each; more, one padded stacked pass.
_LOOP_GROUPS = 16


class GroupedMoEHead(nn.Module):
    """G groups, each with K expert MLPs (in -> hidden -> O) and a softmax gate (in -> K).

    Args:
        n_groups: number of parameter sets G.
        in_dim: input width (encoder output plus market-factor channels).
        n_experts: experts per group K.
        hidden: hidden width of each expert.
        top_k: keep only the k largest gate weights per sample (None: dense gate).
        n_outputs: logits per sample O (one per label horizon); 1 gives (B,) logits.
    """

    def __init__(
        self,
        n_groups: int,
        in_dim: int,
        n_experts: int = 4,
        hidden: int = 32,
        top_k: int | None = None,
        n_outputs: int = 1,
    ):
        super().__init__()
        if top_k is not None and not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be in [1, {n_experts}], got {top_k}")
        g, k, o = n_groups, n_experts, n_outputs
        self.n_groups, self.n_experts, self.top_k, self.n_outputs = g, k, top_k, o
        self.model_args = {
            "n_groups": n_groups,
            "in_dim": in_dim,
            "n_experts": n_experts,
            "hidden": hidden,
            "top_k": top_k,
        }
        if o != 1:  # one-output heads keep the argument list older checkpoints have
            self.model_args["n_outputs"] = o
        self.w1 = nn.Parameter(torch.empty(g, k, in_dim, hidden))
        self.b1 = nn.Parameter(torch.zeros(g, k, hidden))
        self.w2 = nn.Parameter(torch.empty(g, k, hidden, o))
        self.b2 = nn.Parameter(torch.zeros(g, k, o))
        self.gate_w = nn.Parameter(torch.zeros(g, in_dim, k))
        self.gate_b = nn.Parameter(torch.zeros(g, k))
        # Same scale as nn.Linear's default init, drawn for every group and expert at once.
        nn.init.uniform_(self.w1, -1 / math.sqrt(in_dim), 1 / math.sqrt(in_dim))
        nn.init.uniform_(self.w2, -1 / math.sqrt(hidden), 1 / math.sqrt(hidden))
        nn.init.normal_(self.gate_w, std=0.01)  # near-uniform gate that can still break ties

    def forward(self, x: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B,) (or (B, O)) and gate weights (B, K) for inputs x (B, in) of groups
        ``group`` (B,).

        Few groups per batch (at least 16 samples each: cluster heads, inference): one
        dense pass per group present. Many: each sample gathers its group's weights, which
        costs B x K x in x H memory but no Python loop over groups. Stacked, x (G', b, in)
        and group (G', b) with one group per row: logits (G', b[, O]) and gates (G', b, K)
        from one batched pass.
        """
        if x.ndim == 3:
            return self._stacked(x, group[:, 0])
        present = torch.unique(group)
        # 16 samples a group or more: dense passes win (8 groups in 256 samples: 3.5 ms
        # against 7.7 ms forward and backward; even at 16; the gather wins from ~30 groups)
        if 16 * len(present) <= len(group):
            return self._by_group(x, group, present)
        return self._per_sample(x, *self._params(group))

    def _by_group(
        self, x: torch.Tensor, group: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if len(present) == 1:  # one group: no scatter needed
            return self._dense(x, *self._params(int(present)))
        order = torch.argsort(group, stable=True)  # each group's rows, in group order
        counts = torch.bincount(group)[present]
        if len(present) > _LOOP_GROUPS and len(present) * int(counts.max()) <= 2 * len(x):
            return self._padded(x, group, present, order, counts)
        logits = x.new_empty((len(x), self.n_outputs))
        gate = x.new_empty(len(x), self.n_experts)
        for g, rows in zip(present.tolist(), order.split(counts.tolist()), strict=True):
            out, gate[rows] = self._dense(x[rows], *self._params(g))
            logits[rows] = out.view(len(rows), -1)
        return (logits[:, 0] if self.n_outputs == 1 else logits), gate

    def _padded(self, x, group, present, order, counts) -> tuple[torch.Tensor, torch.Tensor]:
        """Many groups in a flat batch: rows placed in a zero-padded stacked batch
        (G', largest count, in), one ``_stacked`` pass, the rows read back out (400 heads in
        a 65,536-sample batch: 36 ms, against 75 ms for a dense pass per head;
        ``bench/throughput.py``)."""
        slot = torch.searchsorted(present, group)  # each row's place among the groups
        first = torch.cumsum(counts, 0) - counts  # each group's first place in ``order``
        position = torch.empty_like(order)
        position[order] = torch.arange(len(x), device=x.device) - first.repeat_interleave(counts)
        stacked = x.new_zeros(len(present), int(counts.max()), x.shape[1])
        stacked[slot, position] = x
        out, gate = self._stacked(stacked, present)
        return out[slot, position], gate[slot, position]

    def _dense(self, x, *params) -> tuple[torch.Tensor, torch.Tensor]:
        """One group's experts and gate on x (B, in) in three matrix products, as
        ``_stacked`` does for many groups (a third of the time of per-expert einsums);
        without gradients, a cache-sized chunk of rows at a time (``in_chunks``)."""
        return in_chunks(lambda rows: self._dense_rows(rows, *params), x)

    def _dense_rows(self, x, w1, b1, w2, b2, gate_w, gate_b) -> tuple[torch.Tensor, torch.Tensor]:
        k, i, h = w1.shape
        o = self.n_outputs
        first = w1.permute(1, 0, 2).reshape(i, k * h)  # (in, K*H)
        hidden = F.gelu(torch.addmm(b1.reshape(k * h), x, first))  # (B, K*H)
        expert = torch.addmm(b2.reshape(k * o), hidden, _block_diagonal(w2))  # (B, K*O)
        gate = self._gate(torch.addmm(gate_b, x, gate_w))  # (B, K)
        out = (gate[..., None] * expert.view(len(x), k, o)).sum(-2)  # (B, O)
        return (out[:, 0] if o == 1 else out), gate

    def _stacked(self, x: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The experts and gate of stacked rows x (G', b, in) of ``groups`` (G',), in three
        batched matrix products: all experts' first layers side by side (in x K*H), their
        second layers as one block-diagonal (K*H x K*O) matrix, so that no (G', b, K, H)
        activation is ever permuted or copied. Without gradients, a cache-sized slice of
        the groups at a time (``in_chunks``)."""
        return in_chunks(self._stacked_rows, x, groups, rows_each=x.shape[1])

    def _stacked_rows(self, x, groups) -> tuple[torch.Tensor, torch.Tensor]:
        w1, b1, w2, b2, gate_w, gate_b = self._params(groups)
        n, k, i, h = w1.shape
        o = self.n_outputs
        first = w1.permute(0, 2, 1, 3).reshape(n, i, k * h)  # (G', in, K*H)
        hidden = F.gelu(torch.baddbmm(b1.reshape(n, 1, k * h), x, first))  # (G', b, K*H)
        second = _block_diagonal(w2)  # (G', K*H, K*O)
        expert = torch.baddbmm(b2.reshape(n, 1, k * o), hidden, second)  # (G', b, K*O)
        gate_logits = torch.baddbmm(gate_b[:, None], x, gate_w)  # (G', b, K)
        gate = self._gate(gate_logits)
        out = (gate[..., None] * expert.view(*expert.shape[:2], k, o)).sum(-2)  # (G', b, O)
        return (out[..., 0] if o == 1 else out), gate

    def _gate(self, gate_logits: torch.Tensor) -> torch.Tensor:
        """Softmax gate weights, only the top k of each sample kept when ``top_k`` is set."""
        if self.top_k is not None and self.top_k < self.n_experts:
            keep = gate_logits.topk(self.top_k, dim=-1).indices  # (..., top_k), ties broken
            dropped = torch.full_like(gate_logits, float("-inf")).scatter(-1, keep, 0.0)
            gate_logits = gate_logits + dropped
        return gate_logits.softmax(-1)

    def _params(self, index: int | torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One group's parameters (int), or each sample's group's (tensor of groups)."""
        return (
            self.w1[index],
            self.b1[index],
            self.w2[index],
            self.b2[index],
            self.gate_w[index],
            self.gate_b[index],
        )

    def _per_sample(self, x, w1, b1, w2, b2, gate_w, gate_b):
        """The experts and gate with every weight gathered per sample (a leading B axis)."""
        h = torch.einsum("bi,bkih->bkh", x, w1) + b1  # (B, K, H)
        expert = torch.einsum("bkh,bkho->bko", F.gelu(h), w2) + b2  # (B, K, O)
        gate_logits = torch.einsum("bi,bik->bk", x, gate_w) + gate_b  # (B, K)
        gate = self._gate(gate_logits)
        out = (gate[:, :, None] * expert).sum(1)  # (B, O)
        return (out[:, 0] if self.n_outputs == 1 else out), gate

    def group_slice(self, group: int) -> GroupedMoEHead:
        """A one-group head holding a copy of ``group``'s parameters (for export per coin)."""
        head = GroupedMoEHead(**{**self.model_args, "n_groups": 1})
        with torch.no_grad():
            for name, param in head.named_parameters():
                param.copy_(getattr(self, name)[group : group + 1])
        return head

    def output_slice(self, output: int) -> GroupedMoEHead:
        """A one-output head computing exactly output ``output`` of this one (the gates and
        the experts' first layers serve every output; only the last layer is per output)."""
        head = GroupedMoEHead(**{k: v for k, v in self.model_args.items() if k != "n_outputs"})
        with torch.no_grad():
            for name, param in head.named_parameters():
                value = getattr(self, name)
                param.copy_(value[..., output : output + 1] if name in ("w2", "b2") else value)
        return head

    @staticmethod
    def load_balance_loss(gate: torch.Tensor) -> torch.Tensor:
        """0 when the batch spreads evenly over the experts, up to K - 1 when one takes all
        (a stacked batch's gates (G', b, K): the mean over its groups)."""
        share = gate.mean(-2)  # (K,) or (G', K)
        return (gate.shape[-1] * (share**2).sum(-1) - 1).mean()


def _block_diagonal(w2: torch.Tensor) -> torch.Tensor:
    """The experts' second layers (..., K, H, O) as one block-diagonal (..., K*H, K*O)
    matrix: expert k's hidden units feed only expert k's outputs."""
    *lead, k, h, o = w2.shape
    eye = torch.eye(k, dtype=w2.dtype, device=w2.device)
    return torch.einsum("...kho,kl->...khlo", w2, eye).reshape(*lead, k * h, k * o)
