"""Shared encoders: map each asset's per-bar feature vector to a latent code.

All encoders share one interface: ``encode(x: (B, F)) -> (B, out_dim)``. The autoencoder is
also trained with ``forward(x) -> (z, x_hat)`` and a reconstruction loss.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def mlp(sizes: list[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers with GELU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers += [nn.GELU(), nn.Dropout(dropout)] if dropout else [nn.GELU()]
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """A symmetric MLP autoencoder; its encoder half is shared by every coin's head.

    Args:
        n_features: input width F (from the data).
        latent_dim: width of the code.
        hidden: widths of the hidden layers of the encoder (mirrored in the decoder).
        dropout: dropout between hidden layers.
    """

    def __init__(
        self,
        n_features: int,
        latent_dim: int = 16,
        hidden: tuple[int, ...] = (64,),
        dropout: float = 0.0,
    ):
        super().__init__()
        # what rebuilds this model from a checkpoint (its weights travel separately)
        self.model_args = {
            "kind": "autoencoder",
            "n_features": n_features,
            "latent_dim": latent_dim,
            "hidden": list(hidden),
            "dropout": dropout,
        }
        sizes = [n_features, *hidden, latent_dim]
        self.encoder = mlp(sizes, dropout)
        self.decoder = mlp(sizes[::-1], dropout)
        self.out_dim = latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)  # (B, F) -> (B, L)
        return z, self.decoder(z)  # (B, L) -> (B, F)


class LinearEncoder(nn.Module):
    """A fixed linear projection, e.g. PCA components fitted on the training window."""

    def __init__(self, components: np.ndarray, mean: np.ndarray):
        super().__init__()
        # contiguous, as after a checkpoint round trip, so both take the same matmul path
        self.register_buffer(
            "components", torch.tensor(np.ascontiguousarray(components), dtype=torch.float32)
        )
        self.register_buffer("mean", torch.tensor(np.ascontiguousarray(mean), dtype=torch.float32))
        self.out_dim = int(components.shape[0])
        self.model_args = {
            "kind": "pca",
            "n_features": int(components.shape[1]),
            "latent_dim": self.out_dim,
        }

    @classmethod
    def empty(cls, n_features: int, latent_dim: int) -> LinearEncoder:
        """An encoder of the given shape with zero weights, to load a checkpoint into."""
        return cls(np.zeros((latent_dim, n_features)), np.zeros(n_features))

    @classmethod
    def fit_pca(cls, x: np.ndarray, n_components: int) -> LinearEncoder:
        """Principal components of the (already scaled) training features ``x`` (M, F)."""
        from sklearn.decomposition import PCA

        n_components = min(n_components, x.shape[1])
        pca = PCA(n_components=n_components, svd_solver="randomized", random_state=0).fit(x)
        return cls(pca.components_, pca.mean_)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.components.T  # (B, F) -> (B, L)


class IdentityEncoder(nn.Module):
    """``encoder=none``: the heads see the scaled features themselves."""

    def __init__(self, n_features: int):
        super().__init__()
        self.out_dim = n_features
        self.model_args = {"kind": "none", "n_features": n_features}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x
