"""Self-describing checkpoints: safetensors weights plus a JSON description, no pickle.

``<dir>/weights.safetensors`` holds every tensor; ``<dir>/checkpoint.json`` holds what is
needed to rebuild and use the model: the encoder and head specs, the feature list, the
scaler state, the cluster map, the factor loadings and the resolved config. Loading never
executes code from the files.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load, save
from torch import nn

from huracan.io import atomic_write_bytes
from huracan.models.encoder import Autoencoder, IdentityEncoder, LinearEncoder
from huracan.models.module import FleetModule
from huracan.models.moe import GroupedMoEHead

WEIGHTS, META = "weights.safetensors", "checkpoint.json"


def encoder_spec(encoder: nn.Module) -> dict:
    """How to rebuild an encoder (its weights travel separately)."""
    if isinstance(encoder, Autoencoder):
        linear = [m for m in encoder.encoder if isinstance(m, nn.Linear)]
        dropout = [m.p for m in encoder.encoder if isinstance(m, nn.Dropout)]
        return {
            "kind": "autoencoder",
            "n_features": linear[0].in_features,
            "latent_dim": encoder.out_dim,
            "hidden": [m.out_features for m in linear[:-1]],
            "dropout": dropout[0] if dropout else 0.0,
        }
    if isinstance(encoder, LinearEncoder):
        return {
            "kind": "pca",
            "n_features": encoder.components.shape[1],
            "latent_dim": encoder.out_dim,
        }
    if isinstance(encoder, IdentityEncoder):
        return {"kind": "none", "n_features": encoder.out_dim}
    raise TypeError(f"no checkpoint spec for encoder {type(encoder).__name__}")


def build_encoder(spec: dict) -> nn.Module:
    kind = spec["kind"]
    if kind == "autoencoder":
        return Autoencoder(
            spec["n_features"], spec["latent_dim"], tuple(spec["hidden"]), spec["dropout"]
        )
    if kind == "pca":
        n, f = spec["latent_dim"], spec["n_features"]
        return LinearEncoder(torch.zeros(n, f).numpy(), torch.zeros(f).numpy())
    if kind == "none":
        return IdentityEncoder(spec["n_features"])
    raise ValueError(f"unknown encoder kind {kind!r} in checkpoint")


def head_spec(head: GroupedMoEHead) -> dict:
    g, k, in_dim, hidden = head.w1.shape
    return {"n_groups": g, "in_dim": in_dim, "n_experts": k, "hidden": hidden, "top_k": head.top_k}


def checkpoint_files(module: FleetModule, meta: dict) -> dict[str, bytes]:
    """The checkpoint as file contents: ``weights.safetensors`` and ``checkpoint.json``.

    Args:
        module: the trained fleet module.
        meta: JSON-serialisable description: features, scaler, cluster map, factor, config.
    """
    tensors = {
        k: v.detach().contiguous().cpu()
        for k, v in module.state_dict().items()
        if not k.startswith("val_metrics.")
    }
    description = {
        "format": "huracan-checkpoint/1",
        "encoder": encoder_spec(module.encoder),
        "head": head_spec(module.head),
        "module": {
            "lr": module.lr,
            "finetune_encoder": module.finetune_encoder,
            "balance_weight": module.balance_weight,
        },
        **meta,
    }
    return {
        WEIGHTS: save(tensors),
        META: json.dumps(description, indent=2, default=_plain).encode(),
    }


def save_checkpoint(directory: str | Path, module: FleetModule, meta: dict) -> Path:
    """Writes the weights, then the description (a reader keys on the description)."""
    directory = Path(directory)
    files = checkpoint_files(module, meta)
    atomic_write_bytes(directory / WEIGHTS, files[WEIGHTS])
    atomic_write_bytes(directory / META, files[META])
    return directory


def load_checkpoint(directory: str | Path) -> tuple[FleetModule, dict]:
    """Rebuilds the module from a checkpoint directory; returns it and the description."""
    directory = Path(directory)
    return module_from_files((directory / WEIGHTS).read_bytes(), (directory / META).read_bytes())


def module_from_files(weights: bytes, meta: bytes) -> tuple[FleetModule, dict]:
    """Rebuilds the module from the two files' contents (never executes code from them)."""
    description = json.loads(meta)
    encoder = build_encoder(description["encoder"])
    head = GroupedMoEHead(**description["head"])
    module = FleetModule(encoder, head, **description["module"])
    state = load(weights)
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("val_metrics.")]
    if missing or unexpected:
        raise ValueError(
            f"checkpoint does not match the model (missing {missing}, unexpected {unexpected})"
        )
    module.eval()
    return module, description


def _plain(value: object) -> object:
    """JSON for numpy values inside the description."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint description")
