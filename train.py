"""Huracan entry point: ``python train.py [group=option ...]`` (see README), the same Hydra
app as ``huracan train``."""

import sys

from huracan.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]], program="train.py"))
