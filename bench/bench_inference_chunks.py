"""Inference in row chunks (``huracan.models.chunks.INFERENCE_CHUNK``): CPU s per chunk size.

Three passes of the heads without gradients, of a 100-coin fold's size, each timed with
every chunk size in one process (CPU s, best of ``--repeat``), the outputs (the validation passes:
their loss, balance loss and every logit) compared bit for bit with 65,536 rows a chunk
(what every such pass took before the chunks):

- every head on every sample (the ensemble's ``every_head_proba``): 3 cluster heads of 4
  experts x 64, 4 horizons, on 300,000 samples;
- a validation pass of the heads (``FleetModule._losses`` on batches of 65,536, as the
  heads' validation loader gives them; 3 groups mixed) on 300,000 samples;
- the same validation pass of 400 coin heads (``head=coin``: 4 experts x 32), each
  batch a zero-padded stack of the coins' rows (``GroupedMoEHead._padded``), split by
  coins.

    .venv/bin/python bench/bench_inference_chunks.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from _util import print_table

import huracan.models.chunks as chunks
from huracan.models import FleetModule, GroupedMoEHead, IdentityEncoder
from huracan.pipelines.hierarchical.ensemble import every_head_proba

SIZES = (65_536, 16_384, 8_192, 4_096, 2_048)
G, LATENT, CHANNELS, HORIZONS = 3, 16, 4, 4


def passes() -> dict:
    """name -> a function computing that pass's outputs (a tuple of tensors)."""
    gen = torch.Generator().manual_seed(0)
    head = GroupedMoEHead(G, LATENT + CHANNELS, 4, 64, None, HORIZONS).eval()
    inputs = torch.randn(300_000, LATENT + CHANNELS, generator=gen)
    module = FleetModule(IdentityEncoder(LATENT), head).eval()
    group = torch.randint(0, G, (len(inputs),), generator=gen)
    y = (torch.rand(len(inputs), HORIZONS, generator=gen) > 0.5).float()
    batches = [
        {
            "x": inputs[i : i + 65_536, :LATENT],
            "factor": inputs[i : i + 65_536, LATENT:],
            "group": group[i : i + 65_536],
            "y": y[i : i + 65_536],
            "w": torch.ones(len(y[i : i + 65_536]), HORIZONS),
        }
        for i in range(0, len(inputs), 65_536)
    ]
    coins = GroupedMoEHead(400, LATENT + CHANNELS, 4, 32, None, HORIZONS).eval()
    per_coin = FleetModule(IdentityEncoder(LATENT), coins).eval()
    coin = torch.randint(0, 400, (len(inputs),), generator=gen)
    coin_batches = [
        b | {"group": coin[i * 65_536 : (i + 1) * 65_536]} for i, b in enumerate(batches)
    ]
    return {
        "every head on every sample": lambda: (
            torch.from_numpy(every_head_proba(head, inputs, G)),
        ),
        "heads' validation pass": lambda: tuple(
            torch.cat([t.reshape(-1) for t in module._losses(b)]) for b in batches
        ),
        "400 coin heads' validation pass": lambda: tuple(
            torch.cat([t.reshape(-1) for t in per_coin._losses(b)]) for b in coin_batches
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    table = []
    for name, run in passes().items():
        reference, first = None, None
        for size in SIZES:
            chunks.INFERENCE_CHUNK = size
            run()  # warm
            best = float("inf")
            for _ in range(args.repeat):
                start = time.process_time()
                out = run()
                best = min(best, time.process_time() - start)
            if reference is None:
                reference, first = out, best
            same = all(torch.equal(a, b) for a, b in zip(out, reference, strict=True))
            table.append(
                {
                    "pass": name,
                    "chunk": f"{size:,}",
                    "CPU s": f"{best:.3f}",
                    "against 65,536": f"{best / first:.2f}",
                    "same bits": "yes" if same else "NO",
                }
            )
    print_table(f"passes without gradients, CPU s best of {args.repeat}", table)


if __name__ == "__main__":
    main()
