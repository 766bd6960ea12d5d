"""The live loop's signal service: champions turned into decisions on the newest bars."""

from huracan.serve.fleet import SIGNAL_FIELDS, Fleet, ServeConfig
from huracan.serve.model import CoinModel, ModelUnusable

__all__ = ["SIGNAL_FIELDS", "CoinModel", "Fleet", "ModelUnusable", "ServeConfig"]
