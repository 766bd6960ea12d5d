"""Neural models: shared encoders, grouped mixture-of-experts heads, Lightning modules."""

from huracan.models.checkpoint import load_checkpoint, save_checkpoint
from huracan.models.encoder import Autoencoder, IdentityEncoder, LinearEncoder
from huracan.models.module import AutoencoderModule, FleetModule
from huracan.models.moe import GroupedMoEHead

__all__ = [
    "Autoencoder",
    "AutoencoderModule",
    "FleetModule",
    "GroupedMoEHead",
    "IdentityEncoder",
    "LinearEncoder",
    "load_checkpoint",
    "save_checkpoint",
]
