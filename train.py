"""Huracan entry point: ``python train.py [group=option ...]`` (see README)."""

import logging
import sys

import hydra
from omegaconf import DictConfig

from huracan.errors import HuracanError
from huracan.run import train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except HuracanError as err:  # bad input or config: say what and where, no traceback
        logging.getLogger("huracan").error("%s: %s", type(err).__name__, err)
        sys.exit(2)


if __name__ == "__main__":
    main()
