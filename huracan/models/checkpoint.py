"""Self-describing checkpoints: safetensors weights plus a JSON description, no pickle.

``<dir>/weights.safetensors`` holds every tensor; ``<dir>/checkpoint.json`` holds what is
needed to rebuild and use the model: the encoder's and head's constructor arguments (their
``model_args``, as nanoGPT's checkpoints carry theirs), the feature list, the
scaler state, the cluster map, the factor loadings and the resolved config. Loading never
executes code from the files.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load, save
from torch import nn

from huracan.io import atomic_write_bytes, plain
from huracan.models.encoder import Autoencoder, IdentityEncoder, LinearEncoder
from huracan.models.module import FleetModule
from huracan.models.moe import GroupedMoEHead

WEIGHTS, META = "weights.safetensors", "checkpoint.json"


# the encoders a checkpoint can name, by the ``kind`` in their ``model_args``
ENCODERS = {"autoencoder": Autoencoder, "pca": LinearEncoder.empty, "none": IdentityEncoder}


def encoder_spec(encoder: nn.Module) -> dict:
    """How to rebuild an encoder: its constructor arguments (its weights travel separately)."""
    if not hasattr(encoder, "model_args"):
        raise TypeError(f"no checkpoint spec for encoder {type(encoder).__name__}")
    return dict(encoder.model_args)


def build_encoder(spec: dict) -> nn.Module:
    """The encoder a spec describes, with fresh weights (to load the checkpoint's into)."""
    args = dict(spec)
    kind = args.pop("kind", None)
    if kind not in ENCODERS:
        raise ValueError(f"unknown encoder kind {kind!r} in checkpoint")
    return ENCODERS[kind](**args)


def head_spec(head: GroupedMoEHead) -> dict:
    return dict(head.model_args)


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
        META: json.dumps(description, indent=2, default=plain).encode(),
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
