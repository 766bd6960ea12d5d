"""Huracan entry point: ``python train.py [group=option ...]`` (see README), the same Hydra
app as ``huracan train``."""

import sys

from huracan.cli import run_hydra

if __name__ == "__main__":
    run_hydra(sys.argv[1:])
