"""Huracan entry point: ``python train.py [group=option ...]`` (see README)."""

import hydra
from omegaconf import DictConfig

from huracan.run import train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
