"""Huracan entry point: ``python train.py [group=option ...]`` (see README)."""

import logging
import sys

import hydra
from omegaconf import DictConfig

from huracan.errors import HuracanError


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Runs Huracan; returns ``optimized_metric`` of the summary for Hydra's sweepers."""
    from huracan.threads import prepare_threads

    try:
        prepare_threads(cfg.get("threads"))  # OMP_WAIT_POLICY: read once, as torch loads
        # Imported here, once Hydra runs the task: torch and Lightning come in with the
        # pipelines, and `--help` or a config error should not wait seconds for them.
        from huracan.run import metric_of, train

        summary, _ = train(cfg)
        return metric_of(summary, cfg.get("optimized_metric"))
    except HuracanError as err:  # bad input or config: say what and where, no traceback
        logging.getLogger("huracan").error("%s: %s", type(err).__name__, err)
        sys.exit(2)


if __name__ == "__main__":
    from huracan.credentials import refuse_secrets

    try:  # before Hydra saves the overrides to disk
        refuse_secrets(sys.argv[1:])
    except HuracanError as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(2)
    main()
