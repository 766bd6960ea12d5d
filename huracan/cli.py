"""The ``huracan`` command: one entry point for every tool (also ``python -m huracan``).

    huracan train [group=option ...] [key=value ...]   the Hydra app (same as python train.py)
    huracan mechanic [key=value ...]                   train with pipeline=mechanic
    huracan signal --root DIR --data DIR ...           signals for the bot
    huracan roster top 10 --root DIR ...               read champions/roster.json
    huracan replay --root DIR --data DIR --out DIR     the live loop replayed over history
    huracan compare [SWEEP_DIR]                        compare the runs of a multirun
    huracan download --exchange binance --symbols BTC,ETH ...   fetch and cache candles
    huracan doctor ROOT [--fix]                        check (and repair) a store root

Each subcommand takes the options of the module it fronts (``huracan signal --help``).
The config (``conf/``) ships inside the package, so ``huracan train`` works from any
directory; run outputs go to ``outputs/`` under the current one.
"""

from __future__ import annotations

import importlib
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from huracan.errors import INTERRUPTS, HuracanError, Interrupted, LockLost

CONF = Path(__file__).resolve().parent / "conf"

# subcommand -> (module whose main(argv) runs it, one line of help)
TOOLS = {
    "signal": ("huracan.signal", "signals for the live bot from the roster's champions"),
    "roster": ("huracan.roster", "read and filter champions/roster.json"),
    "replay": ("huracan.replay", "replay the live loop (signals, positions, Mechanic)"),
    "compare": ("huracan.compare", "compare the runs of a Hydra multirun"),
    "download": ("huracan.download", "fetch and cache candles from a ccxt exchange"),
    "doctor": ("huracan.doctor", "check a store root's names, pointers and roster; --fix"),
}
HYDRA_APPS = {
    "train": ([], "train a fleet: python train.py's Hydra app (any group=option)"),
    "mechanic": (["pipeline=mechanic"], "fine-tune the champions on new bars (the Mechanic)"),
}


def config_dir() -> Path:
    """The config shipped inside the package (``huracan/conf``)."""
    return CONF


def run_hydra(overrides: list[str], program: str = "train.py") -> None:
    """Runs the Hydra app on ``overrides`` (the command line after ``train``).

    Token-like values are refused before Hydra writes ``.hydra/``, and a misspelled
    option or key is named with its closest spelling: one line, exit 2.
    """
    import hydra

    from huracan.credentials import refuse_secrets
    from huracan.overrides import check_overrides

    try:
        refuse_secrets(overrides)
        check_overrides(overrides, config_dir())
    except HuracanError as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [program, *overrides]  # Hydra reads its own command line
    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
    app(_train_task)()


def _train_task(cfg) -> float | None:
    """Runs Huracan; returns ``optimized_metric`` of the summary for Hydra's sweepers.

    An interrupt (Ctrl-C, SIGTERM) ends it with one line naming the stage, exit 130, and
    the marker file ``INTERRUPTED`` in the run folder (``huracan compare`` skips it).
    """
    from huracan.threads import prepare_threads

    logging.captureWarnings(True)  # to the log file; the console leaves them out
    try:
        prepare_threads(cfg.get("threads"))  # OMP_WAIT_POLICY: read once, as torch loads
        # Imported here, once Hydra runs the task: torch and Lightning come in with the
        # pipelines, and `--help` or a config error should not wait seconds for them.
        from huracan.run import metric_of, train

        summary, _ = train(cfg)
        return metric_of(summary, cfg.get("optimized_metric"))
    except (Interrupted, KeyboardInterrupt):
        _mark_interrupted()
        sys.exit(130)
    except LockLost as err:  # another run took the store over: this one wrote no more
        logging.getLogger("huracan").error("%s: %s", type(err).__name__, err)
        sys.exit(3)
    except HuracanError as err:  # bad input or config: say what and where, no traceback
        logging.getLogger("huracan").error("%s: %s", type(err).__name__, err)
        sys.exit(2)


def _mark_interrupted() -> None:
    """One line, and the marker in the run folder."""
    from hydra.core.hydra_config import HydraConfig

    from huracan.io import atomic_write_text
    from huracan.report import INTERRUPTED, where_stopped

    where = where_stopped()
    out = Path(HydraConfig.get().runtime.output_dir)
    atomic_write_text(out / INTERRUPTED, json.dumps({"stopped": where}) + "\n")
    logging.getLogger("huracan").error("interrupted %s; outputs in %s incomplete", where, out)


def _interrupt(signum, frame) -> None:
    """Records the signal, then raises. Imports nothing: it may land inside an import."""
    INTERRUPTS.append(signal.Signals(signum).name)
    raise Interrupted(signal.Signals(signum).name)


def _quiet_unraisable(unraisable) -> None:
    """An interrupt raised inside a finaliser is lost, not an error: the next stage
    boundary raises it again (``report.request_interrupt``), so print nothing for it."""
    if not isinstance(unraisable.exc_value, Interrupted):
        sys.__unraisablehook__(unraisable)


def usage() -> str:
    width = max(map(len, [*TOOLS, *HYDRA_APPS]))
    rows = [(name, text) for name, (_, text) in HYDRA_APPS.items()]
    rows += [(name, text) for name, (_, text) in TOOLS.items()]
    lines = [f"  {name.ljust(width)}  {text}" for name, text in rows]
    return "usage: huracan COMMAND [options]\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None, program: str | None = None) -> int:
    """``huracan COMMAND ...``; returns the exit status (130 after an interrupt).

    Args:
        argv: the words after the program name (default: ``sys.argv[1:]``).
        program: the name Hydra's help shows (default: ``huracan COMMAND``).
    """
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, _interrupt)
        sys.unraisablehook = _quiet_unraisable
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv), program)
    except (Interrupted, KeyboardInterrupt):  # outside a run (start-up): no traceback
        print("interrupted", file=sys.stderr)
        return 130


def _dispatch(args: list[str], program: str | None) -> int:
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in HYDRA_APPS:
        # the preset last: Hydra's parser takes the overrides as one run of words, which a
        # flag such as --cfg job would split
        run_hydra([*rest, *HYDRA_APPS[command][0]], program or f"huracan {command}")
        return 0
    if command not in TOOLS:
        close = _closest(command, [*HYDRA_APPS, *TOOLS])
        hint = f" (did you mean {close!r}?)" if close else ""
        print(f"huracan: unknown command {command!r}{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(TOOLS[command][0])
    sys.argv = [f"huracan {command}", *rest]  # argparse's prog and messages
    return int(module.main(rest) or 0)


def _closest(word: str, choices: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, choices, n=1)
    return found[0] if found else None


if __name__ == "__main__":
    sys.exit(main())
